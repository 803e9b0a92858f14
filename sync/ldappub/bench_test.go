package ldappub

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/directory/directorytest"
	"github.com/collabsync/collabsync/internal/testharness/slapd"
	"github.com/collabsync/collabsync/sync/engine"
	"github.com/collabsync/collabsync/sync/engine/enginetest"
)

// bigState is 100k active users in 10k collaborations, each user in two
// and every tenth collaboration ten times the size of the others.
func bigState(users, collabs int) *directory.State {
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	var us []*directory.User
	for i := range users {
		uid := fmt.Sprintf("u%06d", i)
		us = append(us, &directory.User{UID: uid, Name: "User " + uid, Home: "/home/" + uid, Shell: "/bin/bash", UIDNumber: uint32(100000 + i), GIDNumber: 100})
	}
	members := make([][]string, collabs)
	for i := range users {
		members[i%collabs] = append(members[i%collabs], us[i].UID)
		members[(i*7+1)%collabs] = append(members[(i*7+1)%collabs], us[i].UID)
	}
	var cs []directory.Collaboration
	for j := range collabs {
		m := members[j]
		slices.Sort(m)
		cs = append(cs, directory.Collaboration{Name: fmt.Sprintf("c%05d", j), Members: m})
	}
	return directorytest.Centre(now, us, cs)
}

// BenchmarkPublish100k: the first publish of 100k users and 10k
// collaborations into an empty subtree of a real slapd, against ldapadd
// of the same entries (an LDIF written from the same records, simple bind
// over TCP as the target's) into another subtree of the same server in
// the same run; then one membership change, planned and applied.
// Reported: both times, their ratio, the change's time and LDAP writes.
func BenchmarkPublish100k(b *testing.B) {
	const users, collabs = 100_000, 10_000
	st := bigState(users, collabs)
	s := slapd.StartT(b, slapd.Options{NoSyncprov: true, MaxSizeBytes: 4 << 30})
	set := Kind().NewSettings().(*Settings)
	set.URL, set.TLS, set.BindDN, set.PasswordFile, set.BaseDN = s.URI, "none", s.RootDN, s.RootPWFile, "ou=published,dc=example,dc=org"
	tg := New("published", set, engine.Env{})
	ctx := context.Background()
	if err := s.Add(ctx, "dn: dc=example,dc=org\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n"); err != nil {
		b.Fatal(err)
	}

	// ldapadd of the same entries, first (the server warms up for both).
	p, err := enginetest.Plan(ctx, tg, st)
	if err != nil {
		b.Fatal(err)
	}
	ldif := filepath.Join(b.TempDir(), "same.ldif")
	writeLDIF(b, ldif, "ou=byldapadd,dc=example,dc=org", p.Desired.Slice())
	start := time.Now()
	if out, err := exec.Command("ldapadd", "-x", "-H", s.URI, "-D", s.RootDN, "-w", s.RootPassword, "-f", ldif).CombinedOutput(); err != nil {
		b.Fatalf("ldapadd: %v: %.500s", err, out)
	}
	ldapadd := time.Since(start)

	start = time.Now()
	if err := tg.Apply(ctx, p); err != nil {
		b.Fatal(err)
	}
	publish := time.Since(start)

	// A new leader of an HA pair (or serve's start) reads the subtree:
	// against ldapsearch of the same entries.
	start = time.Now()
	if out, err := exec.Command("ldapsearch", "-x", "-LLL", "-E", "pr=1000/noprompt", "-H", s.URI, "-D", s.RootDN, "-w", s.RootPassword,
		"-b", base, "(objectClass=*)", "objectClass", "uid", "cn", "uidNumber", "gidNumber", "homeDirectory", "loginShell", "memberUid").Output(); err != nil {
		b.Fatalf("ldapsearch: %v: %.500s", err, out)
	}
	ldapsearch := time.Since(start)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	allocBefore := ms.TotalAlloc
	start = time.Now()
	current, err := tg.Current(ctx)
	if err != nil {
		b.Fatal(err)
	}
	read := time.Since(start)
	runtime.ReadMemStats(&ms)
	if len(current) != p.Desired.Len() {
		b.Fatalf("read %d records, published %d", len(current), p.Desired.Len())
	}

	// One membership: u000001 joins c00000.
	c := &st.Collaborations[0]
	c.ActiveMembers = append([]string{"u000001"}, c.ActiveMembers...)
	slices.Sort(c.ActiveMembers)
	start = time.Now()
	p2, err := engine.NewPlan(tg.Name(), p.Desired.Slice(), mustDesired(b, tg, st))
	if err != nil {
		b.Fatal(err)
	}
	if err := tg.Apply(ctx, p2); err != nil {
		b.Fatal(err)
	}
	change := time.Since(start)
	b.ReportMetric(ldapadd.Seconds(), "ldapadd_s")
	b.ReportMetric(publish.Seconds(), "publish_s")
	b.ReportMetric(publish.Seconds()/ldapadd.Seconds(), "publish/ldapadd")
	b.ReportMetric(float64(change.Milliseconds()), "change_ms")
	b.ReportMetric(float64(len(p2.Changes)), "change_writes")
	b.ReportMetric(read.Seconds(), "read_s")
	b.ReportMetric(read.Seconds()/ldapsearch.Seconds(), "read/ldapsearch")
	b.ReportMetric(float64(ms.TotalAlloc-allocBefore)/(1<<20), "read_alloc_MiB")
}

func mustDesired(b *testing.B, tg *Target, st *directory.State) []engine.Record {
	recs, err := tg.Desired(st)
	if err != nil {
		b.Fatal(err)
	}
	return recs
}

// writeLDIF writes the entries the target would add under base.
func writeLDIF(b *testing.B, path, base string, recs []engine.Record) {
	var w strings.Builder
	fmt.Fprintf(&w, "dn: %s\nobjectClass: organizationalUnit\nou: byldapadd\n\n", base)
	fmt.Fprintf(&w, "dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n\n", base)
	fmt.Fprintf(&w, "dn: ou=groups,%s\nobjectClass: organizationalUnit\nou: groups\n\n", base)
	members := map[string][]string{}
	for _, r := range recs {
		if r.Kind == KindMember {
			g, u, _ := strings.Cut(r.Key, " ")
			members[g] = append(members[g], u)
		}
	}
	for _, r := range recs {
		switch r.Kind {
		case KindUser:
			f := strings.SplitN(r.Value, "\t", 5)
			fmt.Fprintf(&w, "dn: uid=%s,ou=people,%s\nobjectClass: account\nobjectClass: posixAccount\nuid: %s\ncn: %s\nuidNumber: %s\ngidNumber: %s\nhomeDirectory: %s\nloginShell: %s\ndescription: x\n\n",
				r.Key, base, r.Key, f[4], f[0], f[1], f[2], f[3])
		case KindGroup:
			fmt.Fprintf(&w, "dn: cn=%s,ou=groups,%s\nobjectClass: posixGroup\ncn: %s\ngidNumber: %s\ndescription: x\n", r.Key, base, r.Key, r.Value)
			for _, m := range members[r.Key] {
				fmt.Fprintf(&w, "memberUid: %s\n", m)
			}
			w.WriteString("\n")
		}
	}
	if err := os.WriteFile(path, []byte(w.String()), 0o644); err != nil {
		b.Fatal(err)
	}
}
