// Package ingest reads accounting logs into the store: incrementally, with
// (inode, offset) checkpoints; through rotation and gzip; idempotently, by
// each job's natural key; attributing every job to a collaboration.
package ingest

import (
	"sort"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/accounting/htcondor"
	"github.com/collabsync/collabsync/accounting/pbs"
	"github.com/collabsync/collabsync/accounting/sge"
	"github.com/collabsync/collabsync/accounting/slurm"
	"github.com/collabsync/collabsync/accounting/swf"
)

// Formats are the log formats by configuration name.
var Formats = map[string]func(accounting.Options) accounting.Decoder{
	"slurm-sacct":   func(o accounting.Options) accounting.Decoder { return slurm.NewSacct(o) },
	"slurm-jobcomp": func(o accounting.Options) accounting.Decoder { return slurm.NewJobcomp(o) },
	"pbs":           func(o accounting.Options) accounting.Decoder { return pbs.New(o) },
	"sge":           func(o accounting.Options) accounting.Decoder { return sge.New(o) }, // SGE, SoGE and UGE 8.2+
	"htcondor":      func(o accounting.Options) accounting.Decoder { return htcondor.New(o) },
	"swf":           func(o accounting.Options) accounting.Decoder { return swf.New(o) },
}

// FormatNames lists the formats, sorted.
func FormatNames() []string {
	names := make([]string, 0, len(Formats))
	for n := range Formats {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
