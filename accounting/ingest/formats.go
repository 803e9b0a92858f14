// Package ingest reads accounting logs into the store: incrementally, with
// (inode, offset) checkpoints; through rotation and gzip; idempotently, by
// each job's natural key; attributing every job to a collaboration.
package ingest

import (
	"slices"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/accounting/htcondor"
	"github.com/collabsync/collabsync/accounting/pbs"
	"github.com/collabsync/collabsync/accounting/sge"
	"github.com/collabsync/collabsync/accounting/slurm"
	"github.com/collabsync/collabsync/accounting/swf"
)

// Registry maps a log format's configuration name to its decoder.
type Registry map[string]func(accounting.Options) accounting.Decoder

// Formats returns the log formats collabsync reads. The program hands
// their names to the configuration, which imports no parser.
func Formats() Registry {
	return Registry{
		"slurm-sacct":   func(o accounting.Options) accounting.Decoder { return slurm.NewSacct(o) },
		"slurm-jobcomp": func(o accounting.Options) accounting.Decoder { return slurm.NewJobcomp(o) },
		"pbs":           func(o accounting.Options) accounting.Decoder { return pbs.New(o) },
		"sge":           func(o accounting.Options) accounting.Decoder { return sge.New(o) }, // SGE, SoGE and UGE 8.2+
		"htcondor":      func(o accounting.Options) accounting.Decoder { return htcondor.New(o) },
		"swf":           func(o accounting.Options) accounting.Decoder { return swf.New(o) },
	}
}

// Names lists the formats, sorted.
func (r Registry) Names() []string {
	names := make([]string, 0, len(r))
	for n := range r {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
