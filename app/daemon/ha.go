package daemon

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/collabsync/collabsync/app/config"
	"github.com/collabsync/collabsync/ldapx/lease"
	"github.com/collabsync/collabsync/sync/engine"
)

// HAStatus is the lease, in /status, when serve is one of a pair.
type HAStatus struct {
	// Role is leader (applies and ingests) or standby.
	Role string `json:"role"`
	lease.State
}

// haMetrics say who leads; registered only when ha is configured.
type haMetrics struct {
	once        sync.Once
	leader      prometheus.Gauge
	generation  prometheus.Gauge
	transitions *prometheus.CounterVec
}

func (m *metrics) setHA(st lease.State, changedRole bool) {
	h := &m.ha
	h.once.Do(func() {
		h.leader = prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "collabsync_ha_leader", Help: "1 while this serve holds the HA lease (applies to targets and ingests), 0 while standby.",
		})
		h.generation = prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "collabsync_ha_lease_generation", Help: "The lease's generation as last read or written: raised by every change of holder.",
		})
		h.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collabsync_ha_transitions_total", Help: "Changes of this serve's role, by the role taken (leader, standby).",
		}, []string{"to"})
		m.reg.MustRegister(h.leader, h.generation, h.transitions)
	})
	h.generation.Set(float64(st.Generation))
	if st.Leader {
		h.leader.Set(1)
	} else {
		h.leader.Set(0)
	}
	if changedRole {
		h.transitions.WithLabelValues(role(st.Leader)).Inc()
	}
}

func role(leader bool) string {
	if leader {
		return "leader"
	}
	return "standby"
}

// setHA records the lease for /status and /readyz.
func (s *status) setHA(st lease.State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data.HA = &HAStatus{Role: role(st.Leader), State: st}
}

// campaign runs the lease until ctx ends (then releases it), for the
// whole process: a configuration reload keeps the lease.
func (s *server) campaign(ctx context.Context, cfg *config.HA) (done <-chan struct{}) {
	l := lease.New(lease.Config{Server: cfg.Settings, DN: cfg.LeaseDN, Holder: cfg.Holder, TTL: time.Duration(cfg.TTL)}, s.log)
	s.roles = make(chan struct{}, 1)
	s.status.setHA(l.State())
	s.lease.Store(l)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		leading := false
		l.Run(ctx, func(st lease.State) {
			s.status.setHA(st)
			s.metrics.setHA(st, st.Leader != leading)
			if st.Leader != leading {
				leading = st.Leader
				select {
				case s.roles <- struct{}{}:
				default:
				}
			}
		})
	}()
	return finished
}

// pair runs the loop as one of an HA pair: while this process holds the
// lease, loop as configured (targets applied under the lease's fence);
// while it does not, the same loop without targets, which keeps the live
// model read and evaluated, the rules' statuses saved, /status current.
// A lost lease ends the leader's runs at once: no grace to finish.
func (s *server) pair(stop, run context.Context, loop engine.Loop, triggers <-chan engine.Trigger) {
	l := s.lease.Load()
	leader := loop.Engine
	leader.Fence = l
	standby := &engine.Engine{Source: leader.Source, Evaluate: leader.Evaluate, Log: leader.Log}
	for {
		_, err := l.Held()
		leading := err == nil
		term := loop
		termStop, endTerm := context.WithCancel(stop)
		termRun, abandon := context.WithCancel(run)
		if leading {
			s.mem.lead()
			term.Engine = leader
			// The live model may still be refreshing: the first run waits
			// for its announcement then.
			term.WaitForTrigger = !s.live.Load()
			s.log.Info("leading: applying to targets", "generation", l.State().Generation)
		} else {
			term.Engine = standby
			term.Approvals = nil
			term.WaitForTrigger = true
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			term.Run(termStop, termRun, triggers)
		}()
		select {
		case <-stop.Done():
			<-done
			endTerm()
			abandon()
			return
		case <-s.roles:
			endTerm()
			if _, err := l.Held(); err != nil {
				abandon() // the fence refuses its writes anyway
			}
			<-done
			abandon()
		}
	}
}
