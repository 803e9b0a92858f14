// Package htcondor decodes HTCondor history files: ClassAds of "Key =
// value" lines, each ended by a "*** ..." banner line.
package htcondor

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/collabsync/collabsync/accounting"
)

// Decoder is an HTCondor history decoder.
type Decoder struct {
	opts accounting.Options
	ad   map[string]string
	bad  error // a bad line inside the current ad; the whole ad is bad
}

// New returns an HTCondor history decoder.
func New(opts accounting.Options) *Decoder { return &Decoder{opts: opts, ad: map[string]string{}} }

func (*Decoder) State() string        { return "" }
func (*Decoder) Restore(string) error { return nil }

// Line implements accounting.Decoder: attribute lines accumulate; the
// banner ends the ad.
func (d *Decoder) Line(line []byte) ([]accounting.Job, bool, error) {
	line = bytes.TrimRight(line, "\r")
	s := strings.TrimSpace(string(line))
	if strings.HasPrefix(s, "***") {
		jobs, err := d.end()
		return jobs, true, err
	}
	if s == "" {
		return nil, len(d.ad) == 0, nil
	}
	key, val, ok := strings.Cut(s, "=")
	if !ok || strings.TrimSpace(key) == "" {
		d.bad = fmt.Errorf("not an attribute line (want Key = value)")
		return nil, false, d.bad
	}
	d.ad[strings.ToLower(strings.TrimSpace(key))] = unquote(strings.TrimSpace(val))
	return nil, false, nil
}

// Flush implements accounting.Decoder: an ad without its closing banner.
func (d *Decoder) Flush() ([]accounting.Job, error) {
	if len(d.ad) == 0 {
		return nil, nil
	}
	return d.end()
}

func (d *Decoder) end() ([]accounting.Job, error) {
	ad, bad := d.ad, d.bad
	d.ad, d.bad = map[string]string{}, nil
	if bad != nil {
		return nil, fmt.Errorf("ad skipped: %w", bad)
	}
	if len(ad) == 0 {
		return nil, nil
	}
	j, err := d.job(ad)
	if err != nil || j == nil {
		return nil, err
	}
	return []accounting.Job{*j}, nil
}

func (d *Decoder) job(ad map[string]string) (*accounting.Job, error) {
	j := accounting.Job{Cluster: d.opts.Cluster, JobID: ad["clusterid"], HetOffset: -1, UID: -1,
		Name: ad["cmd"], ExitCode: ad["exitcode"]}
	if _, err := strconv.ParseUint(j.JobID, 10, 64); err != nil {
		return nil, fmt.Errorf("bad or missing ClusterId %q", j.JobID)
	}
	proc, err := strconv.Atoi(ad["procid"])
	if err != nil || proc < 0 {
		return nil, fmt.Errorf("bad or missing ProcId %q", ad["procid"])
	}
	j.ArrayIndex = proc
	j.User = ad["owner"]
	if j.User == "" {
		j.User, _, _ = strings.Cut(ad["user"], "@")
	}
	j.Account = ad["acctgroup"]
	if j.Account == "" {
		if g := ad["accountinggroup"]; g != "" {
			j.Account = g
			if i := strings.LastIndexByte(g, '.'); i > 0 {
				j.Account = g[:i] // group_atlas.alice → group_atlas
			}
		}
	}
	switch ad["jobstatus"] {
	case "4":
		j.State = "COMPLETED"
		if code, err := strconv.Atoi(j.ExitCode); (err == nil && code != 0) || ad["exitbysignal"] == "true" {
			j.State = "FAILED"
		}
	case "3":
		j.State = "CANCELLED"
	default:
		return nil, nil // idle, running, held: not ended
	}
	if j.Submit, err = epoch(ad["qdate"]); err != nil {
		return nil, fmt.Errorf("QDate: %w", err)
	}
	start := ad["jobcurrentstartdate"]
	if start == "" {
		start = ad["jobstartdate"]
	}
	if j.Start, err = epoch(start); err != nil {
		return nil, fmt.Errorf("JobStartDate: %w", err)
	}
	end := ad["completiondate"]
	if end == "" || end == "0" {
		end = ad["enteredcurrentstatus"]
	}
	if j.End, err = epoch(end); err != nil {
		return nil, fmt.Errorf("CompletionDate: %w", err)
	}
	wall, err := number(ad, "remotewallclocktime")
	if err != nil {
		return nil, err
	}
	suspended, err := number(ad, "cumulativesuspensiontime")
	if err != nil {
		return nil, err
	}
	j.Elapsed = int64(math.Max(0, wall-suspended))
	cpus, err := number(ad, "requestcpus")
	if err != nil {
		return nil, err
	}
	if cpus == 0 {
		cpus = 1 // RequestCpus defaults to 1
	}
	j.CPUs, j.Nodes = int64(cpus), 1
	if g, err := number(ad, "requestgpus"); err == nil {
		j.GPUs = int64(g)
	}
	return &j, nil
}

func number(ad map[string]string, key string) (float64, error) {
	v, ok := ad[key]
	if !ok || v == "undefined" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("bad %s %q", key, v)
	}
	return f, nil
}

func epoch(s string) (time.Time, error) {
	if s == "" || s == "undefined" {
		return time.Time{}, nil
	}
	return accounting.ParseEpoch(s)
}

// unquote strips a ClassAd string's quotes and escapes.
func unquote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return strings.ReplaceAll(v[1:len(v)-1], `\"`, `"`)
	}
	return v
}
