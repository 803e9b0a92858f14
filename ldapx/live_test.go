package ldapx

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/store"
	"github.com/collabsync/collabsync/internal/testharness/churn"
	"github.com/collabsync/collabsync/internal/testharness/gendir"
	"github.com/collabsync/collabsync/internal/testharness/slapd"
)

type nopEvents struct{}

func (nopEvents) Connected(bool)           {}
func (nopEvents) SyncEvent(string, string) {}
func (nopEvents) Live(string, bool)        {}

func (nopEvents) RefreshFailed(string, string, error) {}
func (nopEvents) Deletions(string, time.Duration)     {}
func (nopEvents) ConnectFailed(error)                 {}

// TestLiveModelFollowsRandomChanges: a live model fed by syncrepl from a
// real slapd while random adds, modifies, deletes and renames of users and
// collaborations and their memberships go on, with the watcher stopped for
// part of them, as a daemon restarting from its journal would (it
// resumes from its cookie: the refresh must catch up on
// deletions too, from a session log's list or, without one, from a
// present phase). In the end the model resolves to exactly the snapshot a
// fresh full read gives, and the rules give the same state.
func TestLiveModelFollowsRandomChanges(t *testing.T) {
	for _, tc := range []struct{ memberDN, sessionLog bool }{{false, true}, {true, true}, {false, false}, {true, false}} {
		memberDN := tc.memberDN
		t.Run(fmt.Sprintf("memberDN=%v,sessionlog=%v", tc.memberDN, tc.sessionLog), func(t *testing.T) {
			ldif := filepath.Join(t.TempDir(), "dir.ldif")
			f, err := os.Create(ldif)
			if err != nil {
				t.Fatal(err)
			}
			if err := gendir.Write(f, gendir.Params{Users: 300, Collaborations: 30, MemberDN: memberDN}); err != nil {
				t.Fatal(err)
			}
			f.Close()
			s := slapd.StartT(t, slapd.Options{LDIF: []string{ldif}, NoSessionLog: !tc.sessionLog})
			yaml := simpleBind(s, s.URI) + "  collaborations: {base_dn: \"ou=groups,dc=example,dc=org\""
			if memberDN {
				yaml += ", membership: member_dn, filter: \"(objectClass=groupOfNames)\""
			}
			cfg := configFor(t, s, yaml+"}\n")
			conn := s.RootConn(t)
			ch, err := churn.New(conn, "dc=example,dc=org", 42, memberDN)
			if err != nil {
				t.Fatal(err)
			}

			st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var changes atomic.Int64
			m := NewModel(cfg, func() { changes.Add(1) })
			if n, err := m.Load(context.Background(), st); n != 0 || err != nil {
				t.Fatalf("a fresh store restored %d entries, err %v", n, err)
			}
			watch := func() (stop func()) {
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- NewWatcher(cfg, discard(), nopEvents{}).Run(ctx, m) }()
				return func() {
					cancel()
					if err := <-done; err != nil {
						t.Errorf("watcher: %v", err)
					}
				}
			}
			stop := watch()
			waitLive(t, m)
			steps := func(n int) {
				for i := 0; i < n; i++ {
					if _, err := ch.Step(); err != nil {
						t.Fatal(err)
					}
				}
			}
			steps(400)
			stop()
			if err := m.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			steps(200) // while the daemon is away: it restarts from its journal
			m = NewModel(cfg, func() { changes.Add(1) })
			if n, err := m.Load(context.Background(), st); n == 0 || err != nil {
				t.Fatalf("restored %d entries, err %v", n, err)
			}
			stop = watch()
			waitLive(t, m)
			if n := m.FullRefreshes(); n != 0 {
				t.Errorf("the restored model was refreshed without its cookie %d time(s)", n)
			}
			steps(400)
			defer stop()

			// The stream is asynchronous: wait for it to settle, then
			// require equality.
			var live, full *directory.Snapshot
			deadline := time.Now().Add(15 * time.Second)
			for {
				full = snapshot(t, cfg)
				live, _ = m.Snapshot()
				if reflect.DeepEqual(live, full) || time.Now().After(deadline) {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if !reflect.DeepEqual(live, full) {
				reportDifference(t, live, full)
			}
			pol := directory.Policy{Now: time.Now()}
			if a, b := directory.Evaluate(live, pol, nil), directory.Evaluate(full, pol, nil); !reflect.DeepEqual(a, b) {
				t.Error("the rules give another state from the live model than from a full read")
			}
			if changes.Load() == 0 {
				t.Error("the model never reported a change")
			}
			t.Logf("changes made: %v; %d users, %d collaborations, %d problems", ch.Done, len(full.Users), len(full.Collaborations), len(full.Problems))
		})
	}
}

func waitLive(t *testing.T, m *Model) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !m.Live() {
		if time.Now().After(deadline) {
			t.Fatal("the model did not become live")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func reportDifference(t *testing.T, live, full *directory.Snapshot) {
	t.Helper()
	if live == nil {
		t.Fatal("the model is not live")
	}
	t.Errorf("live model: %d users, %d collaborations, %d problems; full read: %d, %d, %d",
		len(live.Users), len(live.Collaborations), len(live.Problems), len(full.Users), len(full.Collaborations), len(full.Problems))
	shown := 0
	show := func(what string, a, b any) {
		if shown < 10 {
			t.Errorf("%s:\n live %+v\n read %+v", what, a, b)
			shown++
		}
	}
	diffSlices(show, "user", live.Users, full.Users)
	diffSlices(show, "collaboration", live.Collaborations, full.Collaborations)
	if !reflect.DeepEqual(live.Problems, full.Problems) {
		show("problems", live.Problems, full.Problems)
	}
}

// diffSlices shows the elements at which two slices differ.
func diffSlices[T any](show func(what string, a, b any), what string, live, full []T) {
	for i := 0; i < max(len(live), len(full)); i++ {
		var a, b any
		if i < len(live) {
			a = live[i]
		}
		if i < len(full) {
			b = full[i]
		}
		if !reflect.DeepEqual(a, b) {
			show(fmt.Sprintf("%s %d", what, i), a, b)
		}
	}
}
