package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/collabsync/collabsync/internal/testharness"
)

// TestManPageAndCompletion: the hand-written man page and bash completion
// keep up with the binary: every command its usage lists, and every flag
// each command's -h lists, is in the man page and offered by the
// completion (run by the real bash).
func TestManPageAndCompletion(t *testing.T) {
	man, err := os.ReadFile("../../docs/collabsync.1")
	if err != nil {
		t.Fatal(err)
	}
	testharness.Require(t, "groff", "bash")
	if out, err := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z", "../../docs/collabsync.1").CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("groff warns about the man page: %v\n%s", err, out)
	}
	roff := strings.ReplaceAll(string(man), `\-`, "-")
	complete := func(words ...string) []string {
		t.Helper()
		script := `source ../../configs/completion/collabsync.bash; COMP_WORDS=(collabsync "$@"); COMP_CWORD=$#; _collabsync; printf '%s\n' "${COMPREPLY[@]}"`
		out, err := exec.Command("bash", append([]string{"-c", script, "complete"}, words...)...).Output()
		if err != nil {
			t.Fatalf("completion of %q: %v", words, err)
		}
		return strings.Fields(string(out))
	}
	help := collabsync(t, "/nonexistent", "-h")
	if help.code != 0 || help.stderr != "" {
		t.Errorf("-h: exit %d, standard error %q: help is asked for, on standard output", help.code, help.stderr)
	}
	usage := help.stdout
	_, list, _ := strings.Cut(usage, "commands:\n")
	var cmds []string
	for _, line := range strings.Split(list, "\n") {
		if f := strings.Fields(line); strings.HasPrefix(line, "  ") && len(f) > 1 && !strings.HasPrefix(f[0], "-") {
			cmds = append(cmds, f[0])
		} else if line == "" && len(cmds) > 0 {
			break
		}
	}
	if len(cmds) < 10 {
		t.Fatalf("commands from usage: %v\n%s", cmds, usage)
	}
	if got := complete(""); !slices.Equal(got, cmds) {
		t.Errorf("completion offers commands %v, usage lists %v", got, cmds)
	}
	flagRE := regexp.MustCompile(`(?m)^  -([a-z][a-z-]*)`)
	for _, c := range cmds {
		if !strings.Contains(roff, ".B "+c) {
			t.Errorf("the man page does not describe %s", c)
		}
		offered := complete(c, "-")
		ch := collabsync(t, "/nonexistent", c, "-h")
		if ch.code != 0 || ch.stderr != "" {
			t.Errorf("%s -h: exit %d, standard error %q", c, ch.code, ch.stderr)
		}
		for _, m := range flagRE.FindAllStringSubmatch(ch.stdout, -1) {
			flag := "--" + m[1]
			if len(m[1]) == 1 {
				flag = "-" + m[1]
			}
			if !strings.Contains(roff, flag) {
				t.Errorf("the man page does not mention %s %s", c, flag)
			}
			if !slices.Contains(offered, flag) {
				t.Errorf("completion does not offer %s %s (offers %v)", c, flag, offered)
			}
		}
	}
	for _, g := range flagRE.FindAllStringSubmatch(usage, -1) {
		if !strings.Contains(roff, "-"+g[1]) {
			t.Errorf("the man page does not mention the global flag -%s", g[1])
		}
	}
}

// TestCompletionNames: the completion offers the configuration's targets
// after approve, and the collaborations of the stored state after
// --collaboration and -g, read without the directory or its password.
func TestCompletionNames(t *testing.T) {
	testharness.Require(t, "bash")
	e := newDemoEnv(t, "")
	e.sync(t)
	complete := func(words ...string) []string {
		t.Helper()
		script := `source ../../configs/completion/collabsync.bash; COMP_WORDS=(collabsync "$@"); COMP_CWORD=$(($# )); _collabsync; printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.Command("bash", append([]string{"-c", script, "complete"}, words...)...)
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(binary)+":"+os.Getenv("PATH"))
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("completion of %q: %v", words, err)
		}
		return strings.Fields(string(out))
	}
	if got := complete("-config", e.config, "approve", ""); !slices.Equal(got, []string{"nss"}) {
		t.Errorf("approve <target>: %v", got)
	}
	if got := complete("-config", e.config, "report", "--collaboration", "a"); !slices.Equal(got, []string{"atlas"}) {
		t.Errorf("--collaboration a: %v", got)
	}
	if got := complete("-config", e.config, "contacts", "-g", "l"); !slices.Equal(got, []string{"lpnhe", "lsst"}) {
		t.Errorf("-g l: %v", got)
	}
}
