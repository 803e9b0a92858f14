package wiring

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"time"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/accounting/ingest"
	"github.com/collabsync/collabsync/app/config"
	"github.com/collabsync/collabsync/internal/store"
)

// IngestOptions are what differs between the ingest command and the
// daemon's scheduled ingest.
type IngestOptions struct {
	// Attribute charges a job to a collaboration: the command's comes from
	// Attributor (which may read the directory), the daemon's from its
	// last read (it skips a run before it has one).
	Attribute func(*accounting.Job) string
	// Files, if set, are read instead of the source's paths.
	Files []string
	// Rescan reads the files from their start (ingest.Ingester.Rescan).
	Rescan bool
	// Progress, if set, hears how far a file has been stored.
	Progress func(path string, done, total int64)
}

// Ingest reads one configured source into the store: the one way the
// command and the daemon ingest.
func Ingest(ctx context.Context, st *store.Store, log *slog.Logger, s config.AccountingSource, opts IngestOptions) (ingest.Stats, error) {
	src, err := ingestSource(s)
	if err != nil {
		return ingest.Stats{}, fmt.Errorf("source %s: %w", s.Name, err)
	}
	paths := opts.Files
	if paths == nil {
		if paths, err = sourcePaths(s); err != nil {
			return ingest.Stats{}, err
		}
	}
	in := &ingest.Ingester{DB: st.DB, Attribute: opts.Attribute, Log: log, Rescan: opts.Rescan, Progress: opts.Progress}
	return in.Ingest(ctx, src, paths)
}

// ingestSource turns a configured accounting source into the ingester's.
func ingestSource(s config.AccountingSource) (ingest.Source, error) {
	loc, err := time.LoadLocation(s.TimeZone)
	if err != nil {
		return ingest.Source{}, err
	}
	ratio := s.MaxBadRatio
	return ingest.Source{Name: s.Name, Format: s.Format, Options: accounting.Options{Cluster: s.Cluster, Location: loc},
		MaxBadRatio: &ratio, SampleLines: s.SampleLines}, nil
}

// sourcePaths expands a source's globs.
func sourcePaths(s config.AccountingSource) ([]string, error) {
	var out []string
	for _, g := range s.Paths {
		m, err := filepath.Glob(g)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", s.Name, err)
		}
		out = append(out, m...)
	}
	sort.Strings(out)
	return out, nil
}

// Attributor returns what charges jobs to collaborations: the state the
// last sync saved; without one, the directory read once (and saved); when
// that fails too, the jobs' account names alone, said in the log, so that
// no job waits for LDAP.
func Attributor(ctx context.Context, cfg *config.Config, log *slog.Logger, st *store.Store) (*accounting.Attributor, error) {
	saved, err := st.LoadAttribution(ctx)
	if err != nil {
		return nil, err
	}
	if saved != nil {
		log.Debug("attributing jobs with the directory state saved by the last sync", "saved_at", saved.SavedAt)
		return accounting.NewAttributorFrom(saved.Collaborations, saved.AdminOf), nil
	}
	state, err := ReadAndEvaluate(ctx, cfg, st, log)
	if err != nil && !errors.Is(err, ErrRead) {
		return nil, err
	}
	if err != nil {
		log.Warn("no sync has saved the directory's state yet and the directory cannot be read: "+
			"jobs are attributed by their account name alone (run 'collabsync sync --once' to attribute by membership)", "err", err)
		return accounting.AccountOnly(), nil
	}
	attr := accounting.NewAttributor(state)
	if err := SaveAttribution(ctx, st, attr, time.Now()); err != nil {
		return nil, err
	}
	return attr, nil
}
