// Command demo is `make demo`: it starts a throwaway slapd loaded with
// configs/demo/, runs collabsync against it the way an operator would, and
// shows what the centre's machines would see.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
	"github.com/collabsync/collabsync/internal/testharness/slapd"
)

func main() {
	bin := flag.String("bin", "bin/collabsync", "collabsync binary")
	dir := flag.String("dir", "var/demo", "working directory (recreated)")
	flag.Parse()
	if err := run(*bin, *dir); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(bin, dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	nssDir := filepath.Join(dir, "extrausers")
	for _, d := range []string{nssDir, filepath.Join(dir, "state")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}

	section("Starting a throwaway slapd loaded with configs/demo/directory.ldif")
	schema, err := filepath.Abs("configs/ldap/collabsync.ldif")
	if err != nil {
		return err
	}
	srv, err := slapd.Start(slapd.Options{Dir: filepath.Join(dir, "slapd"), LDIF: []string{"configs/demo/directory.ldif"}, Schemas: []string{schema}})
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Printf("slapd pid %d listening on %s and %s\n", srv.PID(), srv.URI, srv.LDAPIURI)

	tmpl, err := os.ReadFile("configs/demo/collabsync.yaml")
	if err != nil {
		return err
	}
	listen, err := freeAddr()
	if err != nil {
		return err
	}
	logsDir := filepath.Join(dir, "logs")
	if err := os.CopyFS(logsDir, os.DirFS("configs/demo/logs")); err != nil {
		return err
	}
	vars := map[string]string{
		"LDAP_URI": srv.URI, "BIND_DN": srv.RootDN, "PASSWORD_FILE": srv.RootPWFile,
		"STATE_DIR": filepath.Join(dir, "state"), "NSS_DIR": nssDir, "LISTEN": listen, "LOGS_DIR": logsDir,
	}
	cfg := filepath.Join(dir, "collabsync.yaml")
	if err := os.WriteFile(cfg, []byte(os.Expand(string(tmpl), func(k string) string { return vars[k] })), 0o600); err != nil {
		return err
	}
	// cs runs collabsync as an operator would; allowed are exit codes that
	// mean "ran fine" for that command (violations exits 1 when it finds some).
	cs := func(allowed []int, args ...string) error {
		full := append([]string{"-config", cfg, "-log-level", "warn", "-log-format", "text"}, args...)
		fmt.Printf("$ collabsync %s\n", strings.Join(args, " "))
		cmd := exec.Command(bin, full...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) && slices.Contains(allowed, ee.ExitCode()) {
			return nil
		}
		return err
	}
	ok := []int{0}

	section("The plan: what a sync would change (nothing is written)")
	if err := cs(ok, "plan"); err != nil {
		return err
	}
	section("One sync")
	if err := cs(ok, "sync", "--once"); err != nil {
		return err
	}
	section("What getent sees (private mount namespace, nsswitch: files extrausers)")
	if err := showGetent(nssDir, dir); err != nil {
		return err
	}
	section("The account rules: every violation, with its reason (exit 1 when there are any)")
	if err := cs([]int{0, 1}, "violations"); err != nil {
		return err
	}
	section("Contacts of a collaboration, like laboinfo (reporting includes collaboration, computing, storage)")
	for _, role := range []string{"collaboration", "reporting"} {
		if err := cs(ok, "contacts", "-g", "atlas", "-p", role); err != nil {
			return err
		}
	}
	section("Accounting: ingest the batch logs in configs/demo/logs (one bad line, steps and a pending job skipped)")
	if err := cs(ok, "ingest"); err != nil {
		return err
	}
	fmt.Println("(a second run reads nothing new: checkpoints)")
	if err := cs(ok, "ingest"); err != nil {
		return err
	}
	section("Usage reports")
	for _, args := range [][]string{
		{"report", "--by", "collaboration"},
		{"report", "--by", "month"},
		{"report", "--by", "user", "--collaboration", "atlas"}, // what atlas's reporting contacts see
		{"report", "--allocations", "--at", "2026-11-30"},      // the demo's logs are of 2026
	} {
		if err := cs(ok, args...); err != nil {
			return err
		}
	}
	section("The daemon: collabsync serve (syncrepl change stream, metrics, health)")
	return showDaemon(bin, cfg, listen, srv)
}

// showDaemon runs `collabsync serve` for a moment: it becomes ready, a
// directory change reaches getent-visible files, and the metrics are there.
func showDaemon(bin, cfg, listen string, srv *slapd.Server) error {
	logf, err := os.Create(filepath.Join(filepath.Dir(cfg), "serve.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-config", cfg, "-log-format", "json", "serve")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	base := "http://" + listen
	if err := waitFor(20*time.Second, func() bool { code, _ := httpGet(base + "/readyz"); return code == 200 }); err != nil {
		return fmt.Errorf("daemon not ready (log in %s): %w", logf.Name(), err)
	}
	fmt.Printf("collabsync serve is ready (log: %s)\n", logf.Name())
	fmt.Printf("  metrics: %s/metrics   health: %s/healthz  %s/readyz   status: %s/status\n", base, base, base, base)

	fmt.Println("$ ldapmodify: trent joins lsst")
	change := "dn: cn=lsst,ou=collaborations,dc=example,dc=org\nchangetype: modify\nadd: memberUid\nmemberUid: trent\n"
	start := time.Now()
	if err := srv.Modify(context.Background(), change); err != nil {
		return err
	}
	group := filepath.Join(filepath.Dir(cfg), "extrausers", "group")
	if err := waitFor(10*time.Second, func() bool {
		b, _ := os.ReadFile(group)
		return strings.Contains(string(b), "lsst:x:21002:dave,erin,frank,trent")
	}); err != nil {
		return fmt.Errorf("change not applied: %w", err)
	}
	fmt.Printf("  %s now has lsst:x:21002:dave,erin,frank,trent (%d ms after the change)\n", group, time.Since(start).Milliseconds())

	_, metrics := httpGet(base + "/metrics")
	fmt.Printf("$ curl -s %s/metrics | grep '^collabsync_' (some of them)\n", base)
	for _, line := range strings.Split(metrics, "\n") {
		for _, prefix := range []string{"collabsync_reconcile_runs_total", "collabsync_changes_applied_total", "collabsync_directory_objects{kind=\"user\"",
			"collabsync_violations", "collabsync_change_stream_mode", "collabsync_ldap_connected",
			"collabsync_live_model_entries", "collabsync_directory_full_reads_total"} {
			if strings.HasPrefix(line, prefix) {
				fmt.Println("  " + line)
			}
		}
	}
	return nil
}

func waitFor(limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

func httpGet(u string) (int, string) {
	resp, err := http.Get(u)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func showGetent(nssDir, scratch string) error {
	view, err := testharness.NewNSSView(nssDir, scratch)
	if err == nil && os.Geteuid() == 0 {
		for _, c := range []string{"getent -s extrausers passwd", "getent -s extrausers group", "id alice", "id ivan"} {
			out, err := view.Run(c)
			if err != nil {
				return err
			}
			fmt.Printf("$ %s\n%s", c, out)
		}
		return nil
	}
	fmt.Println("(not root or libnss-extrausers missing: showing the files getent would read)")
	for _, f := range []string{"passwd", "group"} {
		fmt.Printf("$ cat %s\n", filepath.Join(nssDir, f))
		fh, err := os.Open(filepath.Join(nssDir, f))
		if err != nil {
			return err
		}
		io.Copy(os.Stdout, fh)
		fh.Close()
	}
	return nil
}

func section(title string) { fmt.Printf("\n== %s\n", title) }
