package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness/slapd"
	slurmtest "github.com/collabsync/collabsync/internal/testharness/slurm"
)

// TestSlurmTarget: slapd (testdata/slurm.ldif, users daemon, bin and sys
// being this machine's accounts so that sbatch --uid runs as them) and a
// real Slurm with associations enforced. After sync, sacctmgr show assoc
// matches the directory and sshare shows csFairshare; a member's job
// under the collaboration's account is accepted, one under a foreign
// account rejected; a hand-made account and its user are untouched; a
// second sync runs no changing sacctmgr command. Under serve, a change of
// csFairshare shows in sshare within seconds; daemon leaving lab (his
// administrative collaboration) gets atlas as default with no error; bin
// leaving atlas with a job running keeps the association until the job
// ends, then loses it.
func TestSlurmTarget(t *testing.T) {
	c := slurmtest.StartT(t, slurmtest.Options{})
	must := func(name string, args ...string) string { t.Helper(); return c.Must(t, name, args...) }
	must("sacctmgr", "-i", "add", "account", "physics", "parent=root", "cluster="+c.Name, "description=hand", "organization=lab")
	must("sacctmgr", "-i", "add", "user", "bin", "account=physics", "cluster="+c.Name, "defaultaccount=physics")

	schema, _ := filepath.Abs("../../configs/ldap/collabsync.ldif")
	s := slapd.StartT(t, slapd.Options{LDIF: []string{"testdata/slurm.ldif"}, Schemas: []string{schema}})
	e := demoEnvOn(t, s, serveConfig(freeListen(t), ""))
	w := newSacctmgrLog(t)
	data, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(data), "\naccounting:\n", fmt.Sprintf("\n  - {name: slurm, kind: slurm, sacctmgr: %s, slurm_conf: %s, cluster: %s}\naccounting:\n",
		w.path, c.Conf, c.Name), 1)
	// daemon, bin and sys are the machine's own accounts: not reserved here.
	doc = strings.Replace(doc, "rules:\n", "rules:\n  local_passwd: \"\"\n  local_group: \"\"\n  uid_range: {min: 1, max: 4294967294}\n", 1)
	writeFile(t, e.config, doc)
	changing := func() int { _, n := w.take(); return n }
	assocs := func() string {
		return must("sacctmgr", "-P", "-n", "show", "assoc", "where", "cluster="+c.Name, "format=Account,User,ParentName,Fairshare")
	}
	defaultOf := func(user string) string {
		return strings.TrimSpace(must("sacctmgr", "-P", "-n", "show", "user", "where", "name="+user, "format=DefaultAccount"))
	}

	e.sync(t)
	got := assocs()
	for _, want := range []string{"collaborations||root|1", "atlas||collaborations|300", "cms||collaborations|1", "lab||collaborations|1",
		"lab2||collaborations|1", "atlas|alice||parent", "atlas|bin||parent", "atlas|daemon||parent", "atlas|sys||parent",
		"cms|alice||parent", "cms|bin||parent", "lab|daemon||parent", "lab2|sys||parent", "physics||root|1", "physics|bin||1"} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("sacctmgr show assoc lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "\n") != 17 { // root's two lines and the fifteen above
		t.Errorf("sacctmgr show assoc holds more than the directory:\n%s", got)
	}
	for user, want := range map[string]string{"daemon": "lab", "sys": "lab2", "alice": "atlas", "bin": "physics"} {
		if d := defaultOf(user); d != want {
			t.Errorf("%s's default account = %q, want %q", user, d, want)
		}
	}
	if share := must("sshare", "-P", "-n", "-a", "-o", "Account,User,RawShares"); !strings.Contains(share, "atlas||300") {
		t.Errorf("sshare:\n%s", share)
	}
	changing()
	e.sync(t)
	if n := changing(); n != 0 {
		t.Errorf("a second sync ran %d changing sacctmgr commands", n)
	}

	// Enforced associations: daemon may use atlas, not cms.
	if _, err := c.Run("sbatch", "--uid=daemon", "-A", "cms", "-o", "/dev/null", "--chdir=/tmp", "--wrap", "true"); err == nil ||
		!strings.Contains(err.Error(), "Invalid account") {
		t.Errorf("a job under a foreign account: %v", err)
	}
	job := strings.TrimSpace(strings.TrimPrefix(must("sbatch", "--uid=bin", "-A", "atlas", "-o", "/dev/null", "--chdir=/tmp", "--wrap", "sleep 60"),
		"Submitted batch job "))
	eventually(t, 30*time.Second, "bin's job running", func() bool { return strings.Contains(must("squeue", "-h", "-j", job, "-o", "%T"), "RUNNING") })

	d := startServe(t, e.config)
	d.waitReady(t)
	start := time.Now()
	e.modify(t, "dn: cn=atlas,ou=collaborations,dc=example,dc=org\nchangetype: modify\nreplace: csFairshare\ncsFairshare: 550\n")
	eventually(t, 10*time.Second, "the new fairshare in sshare", func() bool {
		return strings.Contains(must("sshare", "-P", "-n", "-a", "-o", "Account,User,RawShares"), "atlas||550")
	})
	t.Logf("csFairshare in LDAP to sshare: %v", time.Since(start).Round(time.Millisecond))

	e.modify(t, "dn: cn=lab,ou=collaborations,dc=example,dc=org\nchangetype: modify\nreplace: memberUid\nmemberUid: alice\n-\nreplace: csCollaborationContact\ncsCollaborationContact: uid=alice,ou=people,dc=example,dc=org\n\n"+
		"dn: cn=atlas,ou=collaborations,dc=example,dc=org\nchangetype: modify\ndelete: memberUid\nmemberUid: bin\n")
	eventually(t, 10*time.Second, "daemon out of lab, default atlas", func() bool {
		return !strings.Contains(assocs(), "lab|daemon|") && defaultOf("daemon") == "atlas"
	})
	eventually(t, 10*time.Second, "the kept association reported", func() bool {
		return strings.Contains(d.logText(), "atlas/bin") && d.metric(`collabsync_reconcile_runs_total{result="failure",target="slurm"}`) != ""
	})
	if !strings.Contains(assocs(), "atlas|bin||parent\n") {
		t.Errorf("bin lost atlas while his job runs:\n%s", assocs())
	}
	must("scancel", job)
	eventually(t, 30*time.Second, "bin's association gone once the job ended", func() bool { return !strings.Contains(assocs(), "atlas|bin|") })
	if got := assocs(); !strings.Contains(got, "physics||root|1\n") || !strings.Contains(got, "physics|bin||1\n") || defaultOf("bin") != "physics" {
		t.Errorf("the hand-made account or bin's default changed (default %q):\n%s", defaultOf("bin"), got)
	}
	if v := d.metric(`collabsync_target_calls_total{result="exit 0",target="slurm"}`); v == "" {
		t.Error("sacctmgr runs are not counted")
	}
	d.stop(t)
}

// sacctmgrLog is a wrapper around the real sacctmgr that logs each run.
type sacctmgrLog struct{ path, calls string }

func newSacctmgrLog(t testing.TB) *sacctmgrLog {
	t.Helper()
	dir := t.TempDir()
	w := &sacctmgrLog{path: filepath.Join(dir, "sacctmgr"), calls: filepath.Join(dir, "calls")}
	writeFile(t, w.path, "#!/bin/sh\necho \"$*\" >> "+w.calls+"\nexec /usr/bin/sacctmgr \"$@\"\n")
	os.Chmod(w.path, 0o755)
	return w
}

// take returns the runs logged since the last take, all of them and the
// changing ones (not "show").
func (w *sacctmgrLog) take() (all, changing int) {
	data, _ := os.ReadFile(w.calls)
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		all++
		if !strings.Contains(line, " show ") {
			changing++
		}
	}
	os.Remove(w.calls)
	return all, changing
}
