// Command demo is `make demo`: it starts a throwaway slapd loaded with
// configs/demo/, runs collabsync against it the way an operator would, and
// shows what the centre's machines would see.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

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
	vars := map[string]string{
		"LDAP_URI": srv.URI, "BIND_DN": srv.RootDN, "PASSWORD_FILE": srv.RootPWFile,
		"STATE_DIR": filepath.Join(dir, "state"), "NSS_DIR": nssDir,
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
	return nil
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
