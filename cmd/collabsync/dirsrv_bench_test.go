package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/dirsrv"
	"github.com/collabsync/collabsync/internal/testharness/gendir"
	"github.com/collabsync/collabsync/ldapx"
)

// BenchmarkFullRead389: the full read of 100k users and 10k groups
// (memberUid) on 389-ds, against ldapsearch dumping the same entries and
// attributes from the same server (paged, 1000 a page), interleaved three
// times; the median ratio is what to compare.
func BenchmarkFullRead389(b *testing.B) {
	const users, collabs = 100_000, 10_000
	testharness.Require(b, "ldapsearch", "/usr/bin/time")
	dir := b.TempDir()
	ldif := filepath.Join(dir, "directory.ldif")
	f, err := os.Create(ldif)
	if err != nil {
		b.Fatal(err)
	}
	if err := gendir.Write(f, gendir.Params{Users: users, Collaborations: collabs}); err != nil {
		b.Fatal(err)
	}
	f.Close()
	s := dirsrv.StartT(b, dirsrv.Options{LDIF: []string{ldif}})
	cfgPath := writeFile(b, filepath.Join(dir, "collabsync.yaml"), fmt.Sprintf(`ldap:
  uris: [%s]
  bind: {dn: %q, password_file: %s}
  users: {base_dn: "ou=people,dc=example,dc=org"}
  collaborations: {base_dn: "ou=groups,dc=example,dc=org"}
state_dir: %s
`, s.URI, s.RootDN, s.RootPWFile, filepath.Join(dir, "state")))
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		b.Fatal(err)
	}
	src := ldapx.NewSource(cfg.LDAP, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var refT, srcT []float64
	b.ResetTimer() // the import of 110k entries takes minutes
	for i := 0; i < b.N; i++ {
		for rep := 0; rep < 3; rep++ {
			t, _ := ldapsearchDump(b, s.URI, s.RootDN, s.RootPassword, cfg.LDAP)
			refT = append(refT, t)
			start := time.Now()
			snap, err := src.Snapshot(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			srcT = append(srcT, time.Since(start).Seconds())
			if len(snap.Users) != users || len(snap.Collaborations) != collabs {
				b.Fatalf("read %d users, %d collaborations", len(snap.Users), len(snap.Collaborations))
			}
		}
	}
	ref := testharness.Median(refT)
	b.ReportMetric(ref, "ldapsearch_s")
	b.ReportMetric(testharness.Median(srcT), "source_s")
	b.ReportMetric(testharness.Median(srcT)/ref, "source/ldapsearch")
}
