package daemon

import (
	"context"
	"time"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/accounting/report"
	"github.com/collabsync/collabsync/app/config"
	"github.com/collabsync/collabsync/app/wiring"
)

// ingest runs one scheduled ingest of a source, attributing jobs with the
// directory state of the last reconcile (before the first, the one the
// last sync saved).
func (s *server) ingest(ctx context.Context, cfg *config.Config, src config.AccountingSource) {
	release, err := s.lock(ctx, cfg, "serve (ingest "+src.Name+")")
	if err != nil {
		s.metrics.ingestRuns.WithLabelValues(src.Name, "failure").Inc()
		s.log.Error("accounting ingest postponed to its next schedule", "source", src.Name, "err", err)
		return
	}
	defer release()
	attr := s.attr.Load()
	if attr == nil {
		saved, err := s.store.LoadAttribution(ctx)
		if err != nil || saved == nil {
			s.metrics.ingestRuns.WithLabelValues(src.Name, "skipped").Inc()
			s.log.Warn("accounting ingest skipped: the directory has not been read yet", "source", src.Name, "err", err)
			return
		}
		attr = accounting.NewAttributorFrom(saved.Collaborations, saved.AdminOf)
	}
	stats, err := wiring.Ingest(ctx, s.store, s.log, src, wiring.IngestOptions{Attribute: attr.Attribute})
	s.metrics.ingestJobs.WithLabelValues(src.Name, "new").Add(float64(stats.Inserted))
	s.metrics.ingestJobs.WithLabelValues(src.Name, "duplicate").Add(float64(stats.Duplicates))
	s.metrics.ingestBadLines.WithLabelValues(src.Name).Add(float64(stats.BadLines))
	s.metrics.ingestFailedFiles.WithLabelValues(src.Name).Add(float64(stats.FailedFiles))
	s.metrics.ingestUnreadable.WithLabelValues(src.Name).Set(float64(stats.FailedFiles + stats.DamagedFiles))
	for k, cs := range stats.CoreSeconds {
		s.metrics.ingestCoreSeconds.WithLabelValues(k.Cluster, k.Collaboration).Add(float64(cs))
	}
	if !stats.NewestEnd.IsZero() {
		if prev, ok := s.newestEnd.Load(src.Name); !ok || stats.NewestEnd.After(prev.(time.Time)) {
			s.newestEnd.Store(src.Name, stats.NewestEnd)
		}
	}
	if newest, ok := s.newestEnd.Load(src.Name); ok {
		s.metrics.ingestLag.WithLabelValues(src.Name).Set(time.Since(newest.(time.Time)).Seconds())
	}
	if err != nil {
		s.metrics.ingestRuns.WithLabelValues(src.Name, "failure").Inc()
		s.log.Error("accounting ingest failed", "source", src.Name, "err", err)
		return
	}
	s.allocationsUsed(ctx, cfg)
	s.metrics.ingestRuns.WithLabelValues(src.Name, "success").Inc()
	s.metrics.ingestLast.WithLabelValues(src.Name).Set(float64(time.Now().Unix()))
	s.log.Info("accounting ingested", "source", src.Name, "files", stats.Files, "lines", stats.Lines, "new_jobs", stats.Inserted,
		"duplicates", stats.Duplicates, "bad_lines", stats.BadLines)
}

// allocationsUsed sets the allocation metrics from the stored usage and
// the allocations the last read saved.
func (s *server) allocationsUsed(ctx context.Context, cfg *config.Config) {
	uses, err := report.Allocations(ctx, s.store.DB, cfg.Accounting.AllocationPeriod, time.Now(), "")
	if err != nil {
		s.log.Warn("allocation metrics not updated", "err", err)
		return
	}
	s.metrics.allocationUsed.Reset()
	for _, u := range uses {
		if u.AllocatedCoreHours > 0 {
			s.metrics.allocationUsed.WithLabelValues(u.Collaboration, "core").Set(u.CoreUsed)
		}
		if u.AllocatedGPUHours > 0 {
			s.metrics.allocationUsed.WithLabelValues(u.Collaboration, "gpu").Set(u.GPUUsed)
		}
	}
}
