// Package slurm runs a throwaway one-node Slurm cluster for tests: munge on
// a private socket, MariaDB, slurmdbd, slurmctld and slurmd, all on
// loopback under one directory, stopped by PID. The recipe is the one in
// ../shared/COMPONENTS.md.
package slurm

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
)

// Cluster is a running Slurm.
type Cluster struct {
	Dir     string
	Name    string
	Conf    string // SLURM_CONF
	JobComp string // the jobcomp/filetxt log
	// TZ is the time zone slurmctld runs in (jobcomp writes local times).
	TZ    string
	procs []*exec.Cmd
}

// Options change the cluster.
type Options struct {
	// TZ for slurmctld; "" keeps the test's.
	TZ string
}

// Start brings the whole stack up, or stops what it started and fails.
func Start(opts Options) (_ *Cluster, err error) {
	// MariaDB runs as mysql: the directory must be traversable by it, which
	// a test's 0700 TempDir is not.
	d, err := os.MkdirTemp("", "slurm")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(d, 0o755); err != nil {
		return nil, err
	}
	c := &Cluster{Dir: d, Name: "testcluster", TZ: opts.TZ}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	for _, sub := range []string{"state", "spool", "db", "run"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			return nil, err
		}
	}
	// MariaDB runs as mysql and must own its directories.
	for _, sub := range []string{"db", "run"} {
		if out, err := exec.Command("chown", "mysql:mysql", filepath.Join(d, sub)).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("chown: %v: %s", err, out)
		}
	}
	munge := filepath.Join(d, "munge.socket")
	if err := run(nil, "mungekey", "-c", "-k", filepath.Join(d, "munge.key")); err != nil {
		return nil, err
	}
	if err := c.spawn(nil, "munged.out", "munged", "-F", "-f", "-S", munge, "--key-file="+filepath.Join(d, "munge.key"),
		"--pid-file="+filepath.Join(d, "munged.pid"), "--seed-file="+filepath.Join(d, "munge.seed"), "--log-file="+filepath.Join(d, "munged.log")); err != nil {
		return nil, err
	}
	if err := waitFor(10*time.Second, func() bool { return exists(munge) }); err != nil {
		return nil, fmt.Errorf("munged: %w", err)
	}

	sock := filepath.Join(d, "run", "mysql.sock")
	if err := run(nil, "mariadb-install-db", "--no-defaults", "--user=mysql", "--datadir="+filepath.Join(d, "db"),
		"--auth-root-authentication-method=socket", "--skip-test-db"); err != nil {
		return nil, err
	}
	ports, err := testharness.FreePorts(5)
	if err != nil {
		return nil, err
	}
	dbPort, ctldPort, slurmdPort, dbdPort := ports[0], ports[1], ports[2], ports[3]
	if err := c.spawn(nil, "mariadb.log", "mariadbd", "--no-defaults", "--user=mysql", "--datadir="+filepath.Join(d, "db"),
		"--socket="+sock, fmt.Sprintf("--port=%d", dbPort), "--bind-address=127.0.0.1", "--innodb-flush-log-at-trx-commit=0"); err != nil {
		return nil, err
	}
	if err := waitFor(30*time.Second, func() bool { return exists(sock) }); err != nil {
		return nil, fmt.Errorf("mariadbd: %w: %s", err, c.file("mariadb.log"))
	}
	if err := run(nil, "mariadb", "--no-defaults", "-S", sock, "-u", "root", "-e",
		"CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmpw'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"); err != nil {
		return nil, err
	}

	host, err := os.Hostname()
	if err != nil {
		return nil, err
	}
	node, err := nodeLine(host)
	if err != nil {
		return nil, err
	}
	c.Conf = filepath.Join(d, "slurm.conf")
	c.JobComp = filepath.Join(d, "jobcomp.log")
	conf := fmt.Sprintf(`ClusterName=%s
SlurmctldHost=%s(127.0.0.1)
SlurmUser=root
SlurmctldPort=%d
SlurmdPort=%d
AuthType=auth/munge
AuthInfo=socket=%s
AccountingStoragePass=%s
StateSaveLocation=%s/state
SlurmdSpoolDir=%s/spool
SlurmctldPidFile=%s/slurmctld.pid
SlurmdPidFile=%s/slurmd.pid
SlurmctldLogFile=%s/slurmctld.log
SlurmdLogFile=%s/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
PriorityType=priority/multifactor
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=%d
AccountingStorageEnforce=associations,limits
JobCompType=jobcomp/filetxt
JobCompLoc=%s
MpiDefault=none
ReturnToService=2
%s
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
`, c.Name, host, ctldPort, slurmdPort, munge, munge, d, d, d, d, d, d, dbdPort, c.JobComp, node)
	if err := os.WriteFile(c.Conf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	dbd := fmt.Sprintf(`AuthType=auth/munge
AuthInfo=socket=%s
DbdAddr=127.0.0.1
DbdHost=localhost
DbdPort=%d
SlurmUser=root
PidFile=%s/slurmdbd.pid
LogFile=%s/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=%d
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
`, munge, dbdPort, d, d, dbPort)
	if err := os.WriteFile(filepath.Join(d, "slurmdbd.conf"), []byte(dbd), 0o600); err != nil {
		return nil, err
	}
	env := c.Env()
	if err := c.spawn(env, "slurmdbd.out", "slurmdbd", "-D"); err != nil {
		return nil, err
	}
	// Its log says when it serves; polling it with sacctmgr would not.
	if err := waitFor(60*time.Second, func() bool { return strings.Contains(c.file("slurmdbd.log"), "started") }); err != nil {
		return nil, fmt.Errorf("slurmdbd: %w: %s", err, c.file("slurmdbd.log"))
	}
	if _, err := c.Run("sacctmgr", "-i", "add", "cluster", c.Name); err != nil {
		return nil, err
	}
	ctldEnv := env
	if c.TZ != "" {
		ctldEnv = append(ctldEnv, "TZ="+c.TZ)
	}
	if err := c.spawn(ctldEnv, "slurmctld.out", "slurmctld", "-D", "-i"); err != nil {
		return nil, err
	}
	if err := c.spawn(env, "slurmd.out", "slurmd", "-D", "-N", host); err != nil {
		return nil, err
	}
	if err := waitFor(30*time.Second, func() bool {
		out, err := c.Run("sinfo", "-h", "-o", "%T")
		return err == nil && strings.Contains(out, "idle")
	}); err != nil {
		return nil, fmt.Errorf("node not idle: %w: %s", err, c.file("slurmctld.log"))
	}
	return c, nil
}

// StartT starts a cluster for a test and stops it when the test ends.
// Without Slurm it skips, or fails when CI is set.
func StartT(t testing.TB, opts Options) *Cluster {
	t.Helper()
	testharness.RequireRoot(t)
	testharness.Require(t, "slurmctld", "slurmd", "slurmdbd", "sacctmgr", "sacct", "sbatch", "squeue", "sshare", "scancel",
		"munged", "mungekey", "mariadbd", "mariadb-install-db", "mariadb")
	c, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// Must is Run that fails the test on an error.
func (c *Cluster) Must(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := c.Run(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Env is the environment Slurm commands need.
func (c *Cluster) Env() []string { return append(os.Environ(), "SLURM_CONF="+c.Conf) }

// Run runs a Slurm command and returns its output.
func (c *Cluster) Run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = c.Env()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// Stop ends every process, last started first, and removes the directory.
func (c *Cluster) Stop() {
	defer os.RemoveAll(c.Dir)
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			<-done
		}
		// slurmctld leaves slurmscriptd behind in its process group.
		syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
	}
	c.procs = nil
}

func (c *Cluster) spawn(env []string, logName, name string, args ...string) error {
	logf, err := os.Create(filepath.Join(c.Dir, logName))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	c.procs = append(c.procs, cmd)
	return nil
}

func (c *Cluster) file(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, name))
	return string(b)
}

// nodeLine is `slurmd -C`'s node definition on loopback, with a memory
// figure the node will always meet.
func nodeLine(host string) (string, error) {
	out, err := exec.Command("slurmd", "-C").Output()
	if err != nil {
		return "", fmt.Errorf("slurmd -C: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "NodeName=") {
			continue
		}
		var fields []string
		for _, f := range strings.Fields(line) {
			switch {
			case strings.HasPrefix(f, "NodeName="):
				fields = append(fields, "NodeName="+host, "NodeAddr=127.0.0.1")
			case strings.HasPrefix(f, "RealMemory="):
				fields = append(fields, "RealMemory=500")
			default:
				fields = append(fields, f)
			}
		}
		return strings.Join(fields, " "), nil
	}
	return "", fmt.Errorf("slurmd -C printed no NodeName line")
}

func run(env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, out)
	}
	return nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func waitFor(limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v", limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}
