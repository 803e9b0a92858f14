package ldapx

import (
	"crypto/rand"
	"fmt"
	"runtime"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// modelEntries calls put with n users and c collaborations shaped as the
// generated benchmark directory (gendir) sends them: every value a string
// of its own, as the BER decoder makes them, keys as a stream makes them.
func modelEntries(n, c int, put func(s StreamName, key string, e *ldap.Entry)) {
	key := func() string {
		var b [16]byte
		rand.Read(b[:])
		return entryKey(b)
	}
	for i := range n {
		uid := fmt.Sprintf("u%06d", i)
		put(StreamUsers, key(), ldap.NewEntry(fmt.Sprintf("uid=%s,ou=people,dc=example,dc=org", uid), map[string][]string{
			"objectClass": {"inetOrgPerson", "posixAccount"}, "uid": {fmt.Sprint(uid)}, "cn": {fmt.Sprintf("User %d", i)},
			"sn": {fmt.Sprint(i)}, "mail": {fmt.Sprintf("%s@example.org", uid)}, "uidNumber": {fmt.Sprint(100000 + i)},
			"gidNumber": {fmt.Sprint(200000 + i%c)}, "homeDirectory": {fmt.Sprintf("/home/%s", uid)}, "loginShell": {fmt.Sprint("/bin/bash")}}))
	}
	for j := range c {
		var members []string
		for i := j; i < n; i += c {
			members = append(members, fmt.Sprintf("u%06d", i), fmt.Sprintf("u%06d", (i+c/2+1)%n))
		}
		name := fmt.Sprintf("c%05d", j)
		put(StreamCollaborations, key(), ldap.NewEntry(fmt.Sprintf("cn=%s,ou=groups,dc=example,dc=org", name), map[string][]string{
			"objectClass": {"posixGroup"}, "cn": {fmt.Sprint(name)}, "gidNumber": {fmt.Sprint(200000 + j)}, "memberUid": members}))
	}
}

func heapInUse() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc)
}

// BenchmarkModelMemory100k: what the live model retains at 100k users and
// 10k collaborations, and with the users' share and resolved
// collaborations a snapshot leaves cached (serve's resting heap, without
// the targets' known state and the rules' history).
func BenchmarkModelMemory100k(b *testing.B) {
	const n, c = 100_000, 10_000
	cfg := parseSection(b, "ldap:\n  uris: [ldap://localhost]\n  users:\n    base_dn: ou=people,dc=example,dc=org\n"+
		"  collaborations:\n    base_dn: ou=groups,dc=example,dc=org\nstate_dir: /nonexistent\n")
	for b.Loop() {
		before := heapInUse()
		m := NewModel(cfg, func() {})
		for _, s := range m.streams {
			m.beginRefresh(s, false)
		}
		modelEntries(n, c, m.put)
		for _, s := range m.streams {
			if err := m.endRefresh(s); err != nil {
				b.Fatal(err)
			}
		}
		model := heapInUse() - before
		snap, _ := m.Snapshot()
		if len(snap.Users) != n {
			b.Fatalf("%d users", len(snap.Users))
		}
		snap = nil
		cached := heapInUse() - before
		b.ReportMetric(model/(1<<20), "model_MiB")
		b.ReportMetric(cached/(1<<20), "with_cache_MiB")
		b.ReportMetric(model/n, "model_B/user")
		runtime.KeepAlive(m)
	}
}
