package ingest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/accounting"
	"github.com/collabsync/collabsync/internal/testharness"
)

// peerData finds ../shared/peer-data beside the repository (CI and every
// developer machine have it; it is never copied into the repository).
func peerData(t *testing.T) string {
	t.Helper()
	dir, _ := os.Getwd()
	for ; dir != "/"; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "..", "shared", "peer-data", "xdmod-shredder")
			if _, err := os.Stat(p); err != nil {
				testharness.Missing(t, "peer data %s: %v", p, err)
			}
			return p
		}
	}
	t.Fatal("repository root not found")
	return ""
}

// decodeFile runs a format's decoder over a file, line by line.
func decodeFile(t *testing.T, format, path string) (jobs [][]accounting.Job, bad []error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := Formats()[format](accounting.Options{Cluster: "testresource", Location: time.UTC})
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		js, _, err := dec.Line(sc.Bytes())
		jobs = append(jobs, js)
		if err != nil {
			bad = append(bad, err)
		}
	}
	return jobs, bad
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// field compares one field of a job with the peer's value.
type field struct {
	name      string
	got, want any
}

func check(t *testing.T, what string, fields []field, deliberate map[string]string) {
	t.Helper()
	for _, f := range fields {
		g, w := fmt.Sprint(f.got), fmt.Sprint(f.want)
		if g == w {
			continue
		}
		if why, ok := deliberate[f.name]; ok {
			t.Logf("%s: %s differs on purpose (ours %s, peer %s): %s", what, f.name, g, w, why)
			continue
		}
		t.Errorf("%s: %s = %s, peer says %s", what, f.name, g, w)
	}
}

func epochOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Unix()
}

func TestPeerSlurm(t *testing.T) {
	dir := peerData(t)
	var want []map[string]any
	readJSON(t, filepath.Join(dir, "slurm/output/accounting-logs.json"), &want)
	got, bad := decodeFile(t, "slurm-sacct", filepath.Join(dir, "slurm/input/accounting-logs.log"))
	if len(bad) > 0 || len(got) != len(want) {
		t.Fatalf("%d lines, %d expected; bad: %v", len(got), len(want), bad)
	}
	for i, w := range want {
		if len(got[i]) != 1 {
			t.Fatalf("line %d: %d jobs", i+1, len(got[i]))
		}
		j := got[i][0]
		check(t, "job "+j.JobID, []field{
			{"job_id", j.JobID, w["job_id"]},
			{"job_array_index", j.ArrayIndex, w["job_array_index"]},
			{"cluster_name", j.Cluster, w["cluster_name"]},
			{"partition_name", j.Partition, w["partition_name"]},
			{"account_name", j.Account, w["account_name"]},
			{"group_name", j.Group, w["group_name"]},
			{"user_name", j.User, w["user_name"]},
			{"uid_number", j.UID, w["uid_number"]},
			{"submit_time", epochOrNil(j.Submit), str(w["submit_time"])},
			{"start_time", epochOrNil(j.Start), str(w["start_time"])},
			{"end_time", epochOrNil(j.End), str(w["end_time"])},
			{"elapsed", j.Elapsed, w["elapsed"]},
			{"exit_code", j.ExitCode, w["exit_code"]},
			{"state", j.State, w["state"]},
			{"nnodes", j.Nodes, w["nnodes"]},
			{"ncpus", j.CPUs, w["ncpus"]},
			{"job_name", j.Name, w["job_name"]},
			{"ngpus", j.GPUs, w["ngpus"]},
		}, map[string]string{
			"state": `"CANCELLED by <uid>" is normalized to CANCELLED; who cancelled is not usage`,
		})
	}
}

func TestPeerSlurmArrays(t *testing.T) {
	dir := peerData(t)
	var want [][]int
	readJSON(t, filepath.Join(dir, "slurm/output/accounting-logs-with-job-arrays.json"), &want)
	got, bad := decodeFile(t, "slurm-sacct", filepath.Join(dir, "slurm/input/accounting-logs-with-job-arrays.log"))
	if len(bad) > 0 || len(got) != len(want) {
		t.Fatalf("%d lines, %d expected; bad: %v", len(got), len(want), bad)
	}
	for i := range want {
		var idx []int
		for _, j := range got[i] {
			idx = append(idx, j.ArrayIndex)
			if j.JobID != "4103947" {
				t.Errorf("line %d: job id %s", i+1, j.JobID)
			}
		}
		if fmt.Sprint(idx) != fmt.Sprint(want[i]) {
			t.Errorf("line %d: array indexes %v, peer %v", i+1, idx, want[i])
		}
	}
}

// TestPeerSlurmSkipped: jobs still pending or running are skipped (as by
// the peer, silently); unknown states are skipped too, and we report each
// as a bad line (the peer logs a warning).
func TestPeerSlurmSkipped(t *testing.T) {
	dir := peerData(t)
	got, bad := decodeFile(t, "slurm-sacct", filepath.Join(dir, "slurm/input/non-ended-job-state.log"))
	if n := countJobs(got); n != 0 || len(bad) != 0 {
		t.Errorf("non-ended: %d jobs, bad %v", n, bad)
	}
	got, bad = decodeFile(t, "slurm-sacct", filepath.Join(dir, "slurm/input/unknown-job-state.log"))
	if n := countJobs(got); n != 0 || len(bad) != 2 || !strings.Contains(bad[0].Error(), `unknown job state "FOO"`) {
		t.Errorf("unknown: %d jobs, bad %v", n, bad)
	}
	var utf8 []map[string]string
	readJSON(t, filepath.Join(dir, "slurm/output/utf8-multibyte-chars.json"), &utf8)
	got, _ = decodeFile(t, "slurm-sacct", filepath.Join(dir, "slurm/input/utf8-multibyte-chars.log"))
	if got[0][0].Name != utf8[0]["job_name"] {
		t.Errorf("job name %q, peer %q", got[0][0].Name, utf8[0]["job_name"])
	}
}

func countJobs(lines [][]accounting.Job) (n int) {
	for _, l := range lines {
		n += len(l)
	}
	return n
}

// orderedObject reads a JSON object keeping its keys' order.
func orderedObject(t *testing.T, path string) (keys []string, values []map[string]any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("%s: not an object", path)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		keys, values = append(keys, tok.(string)), append(values, v)
	}
	return keys, values
}

func str(v any) any {
	switch x := v.(type) {
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		if err == nil {
			return n
		}
		return x
	case float64:
		return int64(x)
	}
	return v
}

func TestPeerPBS(t *testing.T) {
	dir := peerData(t)
	names, want := orderedObject(t, filepath.Join(dir, "pbs/output/accounting-logs.json"))
	got, bad := decodeFile(t, "pbs", filepath.Join(dir, "pbs/input/accounting-logs.log"))
	if len(bad) > 0 || len(got) != len(want) {
		t.Fatalf("%d lines, %d expected; bad: %v", len(got), len(want), bad)
	}
	for i, w := range want {
		j := got[i][0]
		deliberate := map[string]string{}
		switch names[i] {
		case "Job with Resource_List.ngpus":
			deliberate["resources_used_cpus"] = "PBS Pro's resources_used.ncpus=48 is what it allocated; the peer counts exec_host \"/0*0\" as 2"
			deliberate["account"] = "PBS Pro's project names the allocation to charge; the peer keeps only account="
		case `Job with "gpus" in Resource_List.nodes`:
			deliberate["resources_used_cpus"] = "without exec_host, CPUs come from Resource_List.nodes (1:ppn=28); the peer has none"
			deliberate["resources_used_nodes"] = "without exec_host, nodes come from Resource_List.nodect; the peer has none"
		case "Job with Resource_List.gpu":
			deliberate["resources_used_gpus"] = "Resource_List.gpu=2 asks for 2 GPUs; the peer reads only ngpus and nodes"
		}
		check(t, names[i], []field{
			{"job_id", j.JobID, w["job_id"]},
			{"user", j.User, w["user"]},
			{"groupname", j.Group, w["groupname"]},
			{"account", j.Account, orEmpty(w["account"])},
			{"queue", j.Partition, w["queue"]},
			{"jobname", j.Name, w["jobname"]},
			{"ctime", j.Submit.Unix(), str(w["ctime"])},
			{"start", j.Start.Unix(), str(w["start"])},
			{"end", j.End.Unix(), str(w["end"])},
			{"exit_status", j.ExitCode, w["exit_status"]},
			{"resources_used_walltime", j.Elapsed, str(w["resources_used_walltime"])},
			{"resources_used_cpus", j.CPUs, str(w["resources_used_cpus"])},
			{"resources_used_nodes", j.Nodes, str(w["resources_used_nodes"])},
			{"resources_used_gpus", j.GPUs, str(w["resources_used_gpus"])},
		}, deliberate)
	}
}

func orEmpty(v any) any {
	if v == nil {
		return ""
	}
	return v
}

func TestPeerSGEAndUGE(t *testing.T) {
	dir := peerData(t)
	for _, flavour := range []string{"sge", "uge"} {
		var want []map[string]any
		readJSON(t, filepath.Join(dir, flavour, "output/accounting-logs.json"), &want)
		got, bad := decodeFile(t, "sge", filepath.Join(dir, flavour, "input/accounting-logs.log"))
		if len(bad) > 0 || len(got) != len(want) {
			t.Fatalf("%s: %d lines, %d expected; bad: %v", flavour, len(got), len(want), bad)
		}
		for i, w := range want {
			j := got[i][0]
			wall, _ := strconv.ParseFloat(w["ru_wallclock"].(string), 64)
			task := str(w["task_number"]).(int64)
			wantIndex := int64(-1)
			if task > 0 {
				wantIndex = task
			}
			check(t, fmt.Sprintf("%s job %s", flavour, j.JobID), []field{
				{"job_number", j.JobID, w["job_number"]},
				{"owner", j.User, w["owner"]},
				{"groupname", j.Group, w["groupname"]},
				{"account", j.Account, w["account"]},
				{"qname", j.Partition, w["qname"]},
				{"job_name", j.Name, w["job_name"]},
				{"submission_time", j.Submit.Unix(), str(w["submission_time"])},
				{"start_time", j.Start.Unix(), str(w["start_time"])},
				{"end_time", j.End.Unix(), str(w["end_time"])},
				{"ru_wallclock", j.Elapsed, int64(wall)},
				{"slots", j.CPUs, str(w["slots"])},
				{"task_number", j.ArrayIndex, wantIndex},
				{"exit_status", j.ExitCode, w["exit_status"]},
			}, nil)
		}
	}
}
