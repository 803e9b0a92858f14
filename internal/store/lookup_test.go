package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
)

// TestStatusLookup: a lookup answers what the table read whole does, one
// subject at a time, then from the whole table past LookupLimit; a
// failed read answers none and is kept for Err.
func TestStatusLookup(t *testing.T) {
	ctx := context.Background()
	st := open(t)
	saved := directory.Previous{}
	for i := range LookupLimit + 10 {
		saved[fmt.Sprintf("user/u%04d", i)] = directory.Provisioned{Status: directory.StatusActive, DN: fmt.Sprintf("uid=u%04d", i), ID: int64(10000 + i)}
	}
	saved["collaboration/ops"] = directory.Provisioned{Status: directory.StatusPending, DN: "", ID: -1}
	if err := st.SaveStatuses(ctx, directory.Previous{}, saved, time.Now()); err != nil {
		t.Fatal(err)
	}
	whole, err := st.Statuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.ForgetStatuses()

	l := st.StatusLookup(ctx)
	keys := []string{"collaboration/ops", "user/nobody", "user/U0001"}
	for k := range saved {
		keys = append(keys, k)
	}
	for i, k := range keys {
		if i == LookupLimit-1 && l.whole != nil {
			t.Fatalf("read whole after %d lookups", i)
		}
		p, ok := l.Provisioned(k)
		if wp, wok := whole.Provisioned(k); p != wp || ok != wok {
			t.Errorf("lookup %d %s = %+v %v, read whole %+v %v", i, k, p, ok, wp, wok)
		}
	}
	if l.whole == nil {
		t.Errorf("%d lookups, the table not read whole", len(keys))
	}
	if l.Len() != len(saved) || l.Err() != nil {
		t.Errorf("Len %d, Err %v; want %d, nil", l.Len(), l.Err(), len(saved))
	}

	st.Close()
	l = st.StatusLookup(ctx)
	if p, ok := l.Provisioned("user/u0001"); ok || p != (directory.Provisioned{}) {
		t.Errorf("a failed lookup answered %+v %v", p, ok)
	}
	if l.Err() == nil {
		t.Error("a failed lookup left no error")
	}
}
