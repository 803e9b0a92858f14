// Package accountingtest helps the log parsers' tests.
package accountingtest

import (
	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/internal/store"
)

// DecodeLines feeds lines to an accounting decoder and returns the jobs
// and the errors (bad lines) it gave.
func DecodeLines(d accounting.Decoder, lines []string) (jobs []accounting.Job, bad []error) {
	for _, l := range lines {
		js, _, err := d.Line([]byte(l))
		jobs = append(jobs, js...)
		if err != nil {
			bad = append(bad, err)
		}
	}
	return jobs, bad
}

// Schema is the accounting tables' schema, for tests that open a store.
func Schema() store.Schema {
	return store.Schema{Name: accounting.SchemaName, Migrations: accounting.Migrations()}
}
