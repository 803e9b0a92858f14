package store

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
)

// BenchmarkSaveStatuses: the history a run at 110k subjects saves, when one
// subject changed since the last run (serve saves it after every change).
func BenchmarkSaveStatuses(b *testing.B) {
	ctx := context.Background()
	st, prev := savedStatuses(ctx, b)
	b.ResetTimer()
	b.StopTimer()
	for i := 0; i < b.N; i++ {
		key := directory.SubjectKey(directory.SubjectUser, fmt.Sprintf("u%06d", i%100_000))
		stored := maps.Clone(prev)
		p := prev[key]
		if p.Status == directory.StatusActive {
			p.Status = directory.StatusPending
		} else {
			p.Status = directory.StatusActive
		}
		prev[key] = p
		b.StartTimer()
		if err := st.SaveStatuses(ctx, stored, prev, time.Now()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
	}
}

// BenchmarkSaveAttributionUnchanged: what every run at 100k users and 10k
// collaborations pays to confirm an unchanged attribution.
func BenchmarkSaveAttributionUnchanged(b *testing.B) {
	ctx := context.Background()
	st, err := Open(ctx, b.TempDir()+"/state.db")
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	a := &Attribution{AdminOf: map[string]string{}}
	for i := 0; i < 10_000; i++ {
		a.Collaborations = append(a.Collaborations, fmt.Sprintf("c%05d", i))
	}
	for i := 0; i < 100_000; i++ {
		a.AdminOf[fmt.Sprintf("u%06d", i)] = fmt.Sprintf("c%05d", i%10_000)
	}
	if err := st.SaveAttribution(ctx, a, time.Now()); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := st.SaveAttribution(ctx, a, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSaveStatusesFirst: a first run's save of every subject's
// status, 110k subjects into an empty table (at 1M users, 1.1M rows were
// 5.3 s of serve's start-up before it is ready).
func BenchmarkSaveStatusesFirst(b *testing.B) {
	ctx := context.Background()
	all := directory.Previous{}
	for i := range 100_000 {
		all[directory.SubjectKey(directory.SubjectUser, fmt.Sprintf("u%06d", i))] = directory.Provisioned{
			Status: directory.StatusActive, DN: fmt.Sprintf("uid=u%06d,ou=people,dc=example,dc=org", i), ID: int64(100000 + i)}
	}
	for i := range 10_000 {
		all[directory.SubjectKey(directory.SubjectCollaboration, fmt.Sprintf("c%05d", i))] = directory.Provisioned{
			Status: directory.StatusActive, DN: fmt.Sprintf("cn=c%05d,ou=groups,dc=example,dc=org", i), ID: int64(200000 + i)}
	}
	for n := range b.N {
		b.StopTimer()
		st, err := Open(ctx, fmt.Sprintf("%s/state%d.db", b.TempDir(), n))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := st.SaveStatusChanges(ctx, all, nil, time.Now()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		st.Close()
	}
}

// BenchmarkReadStatuses: the stored statuses of 100k users and 10k
// collaborations read whole (a restart's first run), and what the read
// history keeps live (retained_MB).
func BenchmarkReadStatuses(b *testing.B) {
	ctx := context.Background()
	st, _ := savedStatuses(ctx, b)
	var retained float64
	for b.Loop() {
		st.ForgetStatuses()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		h, err := st.Statuses(ctx)
		if err != nil || h.Len() != 110_000 {
			b.Fatalf("read %v: %v", h, err)
		}
		st.ForgetStatuses()
		runtime.GC()
		runtime.ReadMemStats(&after)
		retained = float64(after.HeapAlloc-before.HeapAlloc) / 1e6
		runtime.KeepAlive(h)
	}
	b.ReportMetric(retained, "retained_MB")
}

// savedStatuses opens a store holding the statuses of 100k users and 10k
// collaborations, and returns them.
func savedStatuses(ctx context.Context, b *testing.B) (*Store, directory.Previous) {
	st, err := Open(ctx, b.TempDir()+"/state.db")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	prev := directory.Previous{}
	for i := 0; i < 100_000; i++ {
		prev[directory.SubjectKey(directory.SubjectUser, fmt.Sprintf("u%06d", i))] = directory.Provisioned{
			Status: directory.StatusActive, DN: fmt.Sprintf("uid=u%06d,ou=people,dc=example,dc=org", i), ID: int64(100000 + i)}
	}
	for i := 0; i < 10_000; i++ {
		prev[directory.SubjectKey(directory.SubjectCollaboration, fmt.Sprintf("c%05d", i))] = directory.Provisioned{
			Status: directory.StatusActive, DN: fmt.Sprintf("cn=c%05d,ou=groups,dc=example,dc=org", i), ID: int64(200000 + i)}
	}
	if err := st.SaveStatuses(ctx, nil, prev, time.Now()); err != nil {
		b.Fatal(err)
	}
	return st, prev
}
