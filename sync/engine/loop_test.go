package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
)

// liveSource serves whatever snapshot was last set.
type liveSource struct {
	mu    sync.Mutex
	snap  *directory.Snapshot
	reads int
}

func (s *liveSource) set(snap *directory.Snapshot) {
	s.mu.Lock()
	s.snap = snap
	s.mu.Unlock()
}

func (s *liveSource) Snapshot(context.Context) (*directory.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	return s.snap, nil
}

// chanTarget sends the users of every plan it applies; hang makes Apply
// block until its context ends, fail makes the first fail applies fail,
// delay makes each apply take that long.
type chanTarget struct {
	name    string
	applied chan []Record
	hang    bool
	delay   time.Duration
	mu      sync.Mutex
	fail    int
	held    []Record
}

func (c *chanTarget) Name() string { return c.name }
func (c *chanTarget) Desired(s *directory.State) ([]Record, error) {
	return (&fakeTarget{}).Desired(s)
}
func (c *chanTarget) Current(context.Context) ([]Record, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held, nil
}
func (c *chanTarget) Apply(ctx context.Context, p *Plan) error {
	if c.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	time.Sleep(c.delay)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail > 0 {
		c.fail--
		return errors.New("HTTP 500")
	}
	c.held = p.Desired.Slice()
	c.applied <- p.Desired.Slice()
	return nil
}

// memQueue is the retry queue in memory, with a 50 ms backoff.
type memQueue struct {
	mu        sync.Mutex
	next      map[string]time.Time
	failures  int
	successes int
}

func (q *memQueue) Waiting(context.Context) (map[string]time.Time, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := map[string]time.Time{}
	for k, v := range q.next {
		out[k] = v
	}
	return out, nil
}

func (q *memQueue) Fail(_ context.Context, target string, _ int, _ error) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.failures++
	q.next[target] = time.Now().Add(50 * time.Millisecond)
	return nil
}

func (q *memQueue) Succeed(_ context.Context, target string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.successes++
	delete(q.next, target)
	return nil
}

type loopFixture struct {
	src      *liveSource
	loop     *Loop
	triggers chan Trigger
	queue    *memQueue
	stop     context.CancelFunc
	cancel   context.CancelFunc
	ended    chan struct{}
	mu       sync.Mutex
	settled  int
	done     map[string]int
	idle     int
	// busyAt is how many reads the source had seen at each Busy.
	busyAt []int
	// plans are the reported results' plans, in order.
	plans []*Plan
}

func startLoop(t *testing.T, debounce time.Duration, targets ...Target) *loopFixture {
	t.Helper()
	f := &loopFixture{src: &liveSource{snap: users("a")}, triggers: make(chan Trigger, 16),
		queue: &memQueue{next: map[string]time.Time{}}, ended: make(chan struct{}), done: map[string]int{}}
	e := &Engine{Source: f.src, Evaluate: allActive, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, tg := range targets {
		e.Targets = append(e.Targets, GuardedTarget{Target: tg, Guard: Guard{MaxDeleteRatio: 1, MinDeletes: 1}})
	}
	f.loop = &Loop{Engine: e, Queue: f.queue, Debounce: debounce, Log: e.Log, WaitForTrigger: true,
		SourceBackoff: func(int) time.Duration { return 50 * time.Millisecond },
		After:         func(context.Context, RunReport) {},
		Done: func(_ context.Context, r TargetReport) {
			f.mu.Lock()
			f.done[r.Result.Target]++
			f.plans = append(f.plans, r.Result.Plan)
			f.mu.Unlock()
		},
		Settled: func(context.Context, *directory.State) {
			f.mu.Lock()
			f.settled++
			f.mu.Unlock()
		},
		Idle: func() {
			f.mu.Lock()
			f.idle++
			f.mu.Unlock()
		},
		Busy: func() {
			f.src.mu.Lock()
			reads := f.src.reads
			f.src.mu.Unlock()
			f.mu.Lock()
			f.busyAt = append(f.busyAt, reads)
			f.mu.Unlock()
		},
	}
	stop, cancelStop := context.WithCancel(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	f.stop, f.cancel = cancelStop, cancel
	go func() {
		defer close(f.ended)
		f.loop.Run(stop, ctx, f.triggers)
	}()
	t.Cleanup(func() {
		f.stop()
		f.cancel()
		<-f.ended
	})
	return f
}

func (f *loopFixture) counts() (settled int, done map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	done = map[string]int{}
	for k, v := range f.done {
		done[k] = v
	}
	return f.settled, done
}

// addUsers makes n directory changes after the first run (users a, b,
// ...), each adding a user, and waits for c to apply each.
func addUsers(t *testing.T, f *loopFixture, c *chanTarget, n int) {
	t.Helper()
	names := []string{"a"}
	for i := range n {
		names = append(names, string(rune('b'+i)))
		f.src.set(users(names...))
		f.triggers <- Trigger{Reason: "directory change"}
		waitApplied(t, c, len(names), time.Second)
	}
}

// waitApplied waits for c to apply users named like want.
func waitApplied(t *testing.T, c *chanTarget, want int, limit time.Duration) {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case recs := <-c.applied:
			if len(recs) == want {
				return
			}
		case <-deadline:
			t.Fatalf("%s did not apply %d users within %v", c.name, want, limit)
		}
	}
}

// TestLoopTargetsDoNotWait: with one target hung in its apply, another
// applies every change at once; the rules' history is not settled while
// the hung target has not taken the state; stopping the loop abandons
// the hung apply when the run context ends, and Run returns.
func TestLoopTargetsDoNotWait(t *testing.T) {
	hung := &chanTarget{name: "hook", hang: true}
	fast := &chanTarget{name: "nss", applied: make(chan []Record, 64)}
	f := startLoop(t, 10*time.Millisecond, hung, fast)
	f.triggers <- Trigger{Reason: "start"}
	waitApplied(t, fast, 1, 2*time.Second)
	addUsers(t, f, fast, 20)
	for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		settled, done := f.counts()
		if settled == 0 && done["hook"] == 0 && done["nss"] == 21 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("settled %d times, runs reported %v; want none settled, nss 21, hook none", settled, done)
		}
	}
	f.stop()
	time.Sleep(50 * time.Millisecond)
	select {
	case <-f.ended:
		t.Fatal("Run returned while a target still ran")
	default:
	}
	f.cancel()
	select {
	case <-f.ended:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return once its context ended")
	}
}

// TestLoopSlowTargetIsNoReasonToWait: a target that has been applying
// for longer than the debounce (a Mailman answering in seconds) does not
// make every change to another target wait out the debounce: each lone
// change is applied at once.
func TestLoopSlowTargetIsNoReasonToWait(t *testing.T) {
	const debounce = 500 * time.Millisecond
	slow := &chanTarget{name: "lists", hang: true}
	fast := &chanTarget{name: "nss", applied: make(chan []Record, 64)}
	f := startLoop(t, debounce, slow, fast)
	f.triggers <- Trigger{Reason: "start"}
	waitApplied(t, fast, 1, 2*time.Second)
	time.Sleep(debounce) // lists has been at it for longer than the debounce
	names := []string{"a"}
	for i := range 5 {
		names = append(names, string(rune('b'+i)))
		f.src.set(users(names...))
		start := time.Now()
		f.triggers <- Trigger{Reason: "directory change"}
		waitApplied(t, fast, len(names), 2*time.Second)
		if took := time.Since(start); took > debounce/2 {
			t.Errorf("change %d took %v to reach nss while lists was slow, want no debounce wait", i, took)
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.stop()
	f.cancel()
	<-f.ended
}

// TestLoopIdleBesideASlowTarget: Idle (where serve measures its resting
// memory) comes once some target is done with the run and the others have
// been at it for longer than the debounce: a target that never finishes
// does not keep it from ever coming. Not while every target is still at
// it, however long.
func TestLoopIdleBesideASlowTarget(t *testing.T) {
	const debounce = 300 * time.Millisecond
	idles := func(f *loopFixture) int {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.idle
	}
	// A first run longer than the debounce (at 1M users nss takes 18 s)
	// and the loop's ticks during it: the run's data is live.
	busy := &chanTarget{name: "nss", applied: make(chan []Record, 64), delay: 2500 * time.Millisecond}
	f := startLoop(t, debounce, busy)
	f.triggers <- Trigger{Reason: "start"}
	time.Sleep(2 * time.Second)
	if n := idles(f); n != 0 {
		t.Errorf("idle %d times while the only target was still at its first run", n)
	}
	waitApplied(t, busy, 1, 2*time.Second)
	waitIdle(t, f, idles, 2*time.Second)

	slow := &chanTarget{name: "lists", hang: true}
	fast := &chanTarget{name: "nss", applied: make(chan []Record, 64)}
	f = startLoop(t, debounce, slow, fast)
	f.triggers <- Trigger{Reason: "start"}
	waitApplied(t, fast, 1, 2*time.Second)
	waitIdle(t, f, idles, 3*time.Second)
}

func waitIdle(t *testing.T, f *loopFixture, idles func(*loopFixture) int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for idles(f) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no Idle within %v of the run's end", within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLoopBusyBeforeEachRead: Busy comes at the start of every run,
// before the directory is read (the daemon measures its resting memory
// again when a run overlapped the measurement).
func TestLoopBusyBeforeEachRead(t *testing.T) {
	nss := &chanTarget{name: "nss", applied: make(chan []Record, 64)}
	f := startLoop(t, 10*time.Millisecond, nss)
	f.triggers <- Trigger{Reason: "start"}
	waitApplied(t, nss, 1, 2*time.Second)
	addUsers(t, f, nss, 3)
	f.mu.Lock()
	defer f.mu.Unlock()
	if want := []int{0, 1, 2, 3}; !slices.Equal(f.busyAt, want) {
		t.Errorf("reads seen at each Busy: %v, want %v (one Busy before each of the 4 runs' reads)", f.busyAt, want)
	}
}

// TestLoopRetriesAFailedTargetAlone: a target failing twice is queued,
// retried after its backoff and taken off the queue; the other target is
// not run again by the retries; the state settles once both took it.
func TestLoopRetriesAFailedTargetAlone(t *testing.T) {
	flaky := &chanTarget{name: "lists", applied: make(chan []Record, 64), fail: 2}
	steady := &chanTarget{name: "nss", applied: make(chan []Record, 64)}
	f := startLoop(t, 10*time.Millisecond, flaky, steady)
	f.triggers <- Trigger{Reason: "start"}
	waitApplied(t, steady, 1, 2*time.Second)
	waitApplied(t, flaky, 1, 2*time.Second)
	deadline := time.Now().Add(2 * time.Second)
	for {
		settled, done := f.counts()
		f.queue.mu.Lock()
		failures, successes, queued := f.queue.failures, f.queue.successes, len(f.queue.next)
		f.queue.mu.Unlock()
		if settled == 1 && done["lists"] == 3 && failures == 2 && successes == 1 && queued == 0 {
			if done["nss"] != 1 {
				t.Errorf("nss ran %d times; the retries of lists ran it again", done["nss"])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("settled %d, runs %v, queue: %d failures, %d successes, %d queued", settled, done, failures, successes, queued)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLoopLeadingEdgeDebounce: a change while no target runs is applied
// at once, not after the debounce; a burst of changes arriving while the
// target applies it is gathered into one run once the target is done.
func TestLoopLeadingEdgeDebounce(t *testing.T) {
	const apply = 200 * time.Millisecond
	nss := &chanTarget{name: "nss", applied: make(chan []Record, 64), delay: apply}
	f := startLoop(t, time.Second, nss)
	f.triggers <- Trigger{Reason: "start"}
	waitApplied(t, nss, 1, 2*time.Second)
	time.Sleep(100 * time.Millisecond) // quiet

	f.src.set(users("a", "b"))
	start := time.Now()
	f.triggers <- Trigger{Reason: "directory change"}
	names := []string{"a", "b"}
	time.Sleep(20 * time.Millisecond) // the lone change's run has begun
	for i := range 10 {
		names = append(names, string(rune('c'+i)))
		f.src.set(users(names...))
		f.triggers <- Trigger{Reason: "directory change"}
		time.Sleep(5 * time.Millisecond)
	}
	waitApplied(t, nss, 2, time.Second)
	if took := time.Since(start); took > apply+150*time.Millisecond {
		t.Errorf("a lone change while no target ran took %v to apply (the apply takes %v), want no debounce wait", took, apply)
	}
	runs := 0
	for deadline := time.After(2 * time.Second); ; {
		select {
		case recs := <-nss.applied:
			runs++
			if len(recs) != len(names) {
				continue
			}
		case <-deadline:
			t.Fatalf("the burst was not applied within 2 s (%d runs)", runs)
		}
		break
	}
	if took := time.Since(start); took > 2*apply+300*time.Millisecond {
		t.Errorf("the burst was applied %v after the lone change: it waited for the debounce, not for the target", took)
	}
	if runs != 1 {
		t.Errorf("the burst of 10 changes took %d runs, want 1", runs)
	}
}

// TestLoopReportsAnAppliedPlanByItsCounts: the report of an applied plan
// keeps its counts and digest, not its changes (at 1M users a first run's
// 83 MB, live while the history was recorded).
func TestLoopReportsAnAppliedPlanByItsCounts(t *testing.T) {
	c := &chanTarget{name: "nss", applied: make(chan []Record, 4)}
	f := startLoop(t, time.Millisecond, c)
	f.src.set(users("a", "b", "c"))
	f.triggers <- Trigger{Reason: "start"}
	waitApplied(t, c, 3, 2*time.Second)
	deadline := time.Now().Add(2 * time.Second)
	for {
		f.mu.Lock()
		plans := slices.Clone(f.plans)
		f.mu.Unlock()
		if len(plans) > 0 {
			p := plans[0]
			if add, mod, del := p.Counts(); p.Changes != nil || add != 3 || mod != 0 || del != 0 || p.Digest == "" || p.Desired.Len() != 3 {
				t.Fatalf("reported plan: %d changes kept, counts %d/%d/%d, digest %q, %d desired", len(p.Changes), add, mod, del, p.Digest, p.Desired.Len())
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no report")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
