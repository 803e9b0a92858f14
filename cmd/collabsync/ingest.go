package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/collabsync/collabsync/accounting/ingest"
	"github.com/collabsync/collabsync/app/config"
	"github.com/collabsync/collabsync/app/wiring"
)

func cmdIngest(ctx context.Context, a *app, args []string) int {
	fs := a.newFlagSet("ingest", "[--source NAME] [--from FILE] [--rescan]")
	only := fs.String("source", "", "ingest only this source")
	from := fs.String("from", "", "ingest this file (with the source's format) instead of the source's paths")
	rescan := fs.Bool("rescan", false, "read the files again from their start, ignoring checkpoints and recorded damage (jobs already stored are not counted twice)")
	if !a.parseFlags(fs, args) {
		return exitUsage
	}
	cfg := a.loadConfig()
	if cfg == nil {
		return exitUsage
	}
	var sources []config.AccountingSource
	for _, s := range cfg.Accounting.Sources {
		if *only == "" || s.Name == *only {
			sources = append(sources, s)
		}
	}
	switch {
	case len(sources) == 0 && *only != "":
		fmt.Fprintf(a.stderr, "collabsync ingest: no source %q in %s\n", *only, a.configPath)
		return exitUsage
	case len(sources) == 0:
		fmt.Fprintf(a.stderr, "collabsync ingest: %s configures no accounting sources\n", a.configPath)
		return exitUsage
	case *from != "" && len(sources) > 1:
		fmt.Fprintln(a.stderr, "collabsync ingest: --from needs --source to say the file's format")
		return exitUsage
	}
	st, done, ok := a.openStateFor(ctx, cfg, "ingest", true)
	if !ok {
		return exitFailure
	}
	defer done()
	attr, err := wiring.Attributor(ctx, cfg, a.log, st)
	if err != nil {
		a.errorf(err)
		return exitFailure
	}
	opts := wiring.IngestOptions{Attribute: attr.Attribute, Rescan: *rescan}
	if *from != "" {
		opts.Files = []string{*from}
	}
	if isTerminal(a.stderr) {
		opts.Progress = progressPrinter(a.stderr)
	}
	code := exitOK
	for _, s := range sources {
		stats, err := wiring.Ingest(ctx, st, a.log, s, opts)
		printIngest(a.stdout, s.Name, stats)
		if err != nil {
			a.errorf(err)
			code = exitFailure
		}
	}
	return code
}

func printIngest(w io.Writer, name string, s ingest.Stats) {
	var cs int64
	for _, v := range s.CoreSeconds {
		cs += v
	}
	fmt.Fprintf(w, "source %s: %d file(s), %d line(s), %d new job(s), %d already stored, %d bad line(s), %.1f new core-hours",
		name, s.Files, s.Lines, s.Inserted, s.Duplicates, s.BadLines, float64(cs)/3600)
	if s.FailedFiles > 0 {
		fmt.Fprintf(w, ", %d file(s) failed", s.FailedFiles)
	}
	if s.DamagedFiles > 0 {
		fmt.Fprintf(w, ", %d damaged file(s) skipped (reported before; 'ingest --rescan' reads them again)", s.DamagedFiles)
	}
	fmt.Fprintln(w)
}

// progressPrinter shows how far a long ingest is, at most twice a second.
func progressPrinter(w io.Writer) func(path string, done, total int64) {
	var mu sync.Mutex
	var last time.Time
	return func(path string, done, total int64) {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(last) < 500*time.Millisecond && done < total {
			return
		}
		last = time.Now()
		pct := 100.0
		if total > 0 {
			pct = min(100, 100*float64(done)/float64(total))
		}
		fmt.Fprintf(w, "\r%s: %5.1f%% (%d MiB)", filepath.Base(path), pct, done>>20)
		if done >= total {
			fmt.Fprintln(w)
		}
	}
}
