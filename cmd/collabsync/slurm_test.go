package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
	slurmtest "github.com/collabsync/collabsync/internal/testharness/slurm"
)

// TestSlurmTarget: the demo centre with a slurm target against a real
// Slurm: sync makes each active collaboration an account under
// "collaborations" with its csFairshare and each active member an
// association; under serve, a change of csFairshare in LDAP shows in
// sshare within seconds.
func TestSlurmTarget(t *testing.T) {
	testharness.RequireRoot(t)
	testharness.Require(t, "slurmctld", "slurmd", "slurmdbd", "sacctmgr", "sshare", "munged", "mungekey", "mariadbd", "mariadb-install-db")
	c, err := slurmtest.Start(slurmtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	e := newDemoEnv(t, serveConfig(freeListen(t), ""))
	data, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	sacctmgr, _ := exec.LookPath("sacctmgr")
	target := fmt.Sprintf("  - {name: slurm, kind: slurm, sacctmgr: %s, slurm_conf: %s, cluster: %s}\n", sacctmgr, c.Conf, c.Name)
	writeFile(t, e.config, strings.Replace(string(data), "\naccounting:\n", "\n"+target+"accounting:\n", 1))
	e.sync(t)
	share := func() string {
		out, err := c.Run("sshare", "-P", "-n", "-a", "-o", "Account,User,RawShares")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	got := share()
	for _, want := range []string{"atlas||400", "atlas|alice|parent", "lsst||"} {
		if !strings.Contains(got, want) {
			t.Errorf("sshare lacks %q:\n%s", want, got)
		}
	}
	d := startServe(t, e.config)
	d.waitReady(t)
	start := time.Now()
	e.modify(t, "dn: cn=atlas,ou=collaborations,dc=example,dc=org\nchangetype: modify\nreplace: csFairshare\ncsFairshare: 550\n")
	eventually(t, 10*time.Second, "the new fairshare in sshare", func() bool { return strings.Contains(share(), "atlas||550") })
	t.Logf("csFairshare in LDAP to sshare: %v", time.Since(start).Round(time.Millisecond))
	if v := d.metric(`collabsync_target_calls_total{result="exit 0",target="slurm"}`); v == "" {
		t.Error("sacctmgr runs are not counted")
	}
	d.stop(t)
}
