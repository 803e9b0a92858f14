package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// binary is collabsync built once for the integration tests, so they run the
// program exactly as an admin would.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "collabsync-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "collabsync")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if raceEnabled {
		build = exec.Command("go", "build", "-race", "-o", binary, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=1")
	}
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build collabsync: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// collabsync runs the built binary with a config file.
func collabsync(t *testing.T, configPath string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append([]string{"-config", configPath, "-log-format", "text"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run collabsync: %v", err)
	}
	return r
}

func writeFile(t testing.TB, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestVersionAndUsage(t *testing.T) {
	r := collabsync(t, "/nonexistent", "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "collabsync ") {
		t.Errorf("version: code %d, stdout %q", r.code, r.stdout)
	}
	r = collabsync(t, "/nonexistent", "no-such-command")
	if r.code != exitUsage || !strings.Contains(r.stderr, `unknown command "no-such-command"`) {
		t.Errorf("unknown command: code %d, stderr %q", r.code, r.stderr)
	}
}
