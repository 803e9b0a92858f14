package testharness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// NSSView runs commands such as "getent passwd alice" or "id alice" with the
// real NSS stack, in a private mount namespace whose /etc/nsswitch.conf says
// "files extrausers" and whose /var/lib/extrausers is dir. The machine's own
// /etc is never touched. The directory (not single files) is bound so that
// a rename inside it stays visible.
type NSSView struct {
	Dir     string // the nss target's output directory
	scratch string
}

// NewNSSView prepares a view of dir; scratch holds the private nsswitch.conf.
func NewNSSView(dir, scratch string) (*NSSView, error) {
	conf := "passwd: files extrausers\ngroup: files extrausers\nshadow: files extrausers\n"
	if err := os.WriteFile(filepath.Join(scratch, "nsswitch.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	if _, err := os.Stat("/var/lib/extrausers"); err != nil {
		return nil, fmt.Errorf("/var/lib/extrausers (from libnss-extrausers) is missing: %w", err)
	}
	return &NSSView{Dir: dir, scratch: scratch}, nil
}

// Run runs one shell command line in the view and returns its stdout.
func (v *NSSView) Run(cmdline string) (string, error) {
	script := fmt.Sprintf("mount --bind %s /etc/nsswitch.conf && mount --bind %s /var/lib/extrausers && %s",
		shellQuote(filepath.Join(v.scratch, "nsswitch.conf")), shellQuote(v.Dir), cmdline)
	cmd := exec.Command("unshare", "-m", "--propagation", "private", "sh", "-c", script)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", cmdline, err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
