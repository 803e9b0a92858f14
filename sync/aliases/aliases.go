// Package aliases writes mail aliases for collaborations and production
// accounts as an aliases(5) file: <collaboration>-contacts, -computing and
// -storage, and <production account>-managers. The file is written
// atomically and, when configured, a command such as postalias or
// newaliases is run after it (without a shell, with a timeout); a failed
// command is retried until it succeeds for the file as it is.
package aliases

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/collabsync/collabsync/internal/atomicfile"
	"github.com/collabsync/collabsync/internal/child"
	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/duration"
	"github.com/collabsync/collabsync/sync/engine"
)

// Record kinds.
const (
	// KindAlias is one alias: its key the name, its value the whole line.
	KindAlias = "alias"
	// KindCommand is the post-write command's state for the file as it
	// is: "done" once it succeeded for that content, "pending" before.
	KindCommand = "command"
)

// commandKey names the post-write command's record.
const commandKey = "post-write"

// The aliases written per collaboration, by contact role, and per
// production account.
var (
	roleSuffixes = []struct {
		role   directory.Role
		suffix string
	}{
		{directory.RoleCollaboration, "-contacts"},
		{directory.RoleComputing, "-computing"},
		{directory.RoleStorage, "-storage"},
	}
	managersSuffix = "-managers"
)

// aliasName is what an alias this target writes may be called (aliases
// are looked up folded to lower case).
var aliasName = regexp.MustCompile(`^[a-z0-9_][a-z0-9_.-]*$`)

// Settings configure an aliases target instance.
type Settings struct {
	// Path is the aliases file the target owns whole.
	Path string `yaml:"path"`
	// Command runs after the file changed, e.g. [/usr/sbin/postalias,
	// /etc/aliases.d/collabsync]: an absolute program and its arguments,
	// no shell.
	Command []string `yaml:"command"`
	// CommandTimeout bounds one run of the command.
	CommandTimeout duration.Duration `yaml:"command_timeout"`
}

// Validate implements engine.Settings.
func (s *Settings) Validate() []engine.SettingProblem {
	var probs []engine.SettingProblem
	if !filepath.IsAbs(s.Path) {
		probs = append(probs, engine.SettingProblem{Key: "path", Msg: fmt.Sprintf("must be an absolute path, got %q", s.Path)})
	}
	if len(s.Command) > 0 && !filepath.IsAbs(s.Command[0]) {
		probs = append(probs, engine.SettingProblem{Key: "command", Msg: fmt.Sprintf("the program must be an absolute path (no shell, no PATH search), got %q", s.Command[0])})
	} else if len(s.Command) > 0 {
		if err := child.Trusted(s.Command[0]); err != nil {
			probs = append(probs, engine.SettingProblem{Key: "command", Msg: err.Error()})
		}
	}
	if s.CommandTimeout <= 0 {
		probs = append(probs, engine.SettingProblem{Key: "command_timeout", Msg: "must be positive"})
	}
	return probs
}

// Kind declares the aliases kind of target.
func Kind() engine.Kind {
	return engine.NewKind("aliases", func() *Settings { return &Settings{CommandTimeout: duration.Duration(30 * time.Second)} }, New)
}

// New builds an instance named name.
func New(name string, s *Settings, env engine.Env) *Target {
	return &Target{InstanceName: name, Path: s.Path, Command: s.Command, CommandTimeout: time.Duration(s.CommandTimeout), Call: env.Call}
}

// Target is the aliases target.
type Target struct {
	InstanceName   string
	Path           string
	Command        []string
	CommandTimeout time.Duration
	// Call, when set, counts each run of the command by its result.
	Call func(result string)
}

var (
	_ engine.Target    = (*Target)(nil)
	_ engine.Recoverer = (*Target)(nil)
	_ engine.Settings  = (*Settings)(nil)
)

// Name implements engine.Target.
func (t *Target) Name() string { return t.InstanceName }

// Desired implements engine.Target: for each provisioned collaboration an
// alias per contact role holding its contacts' addresses (contacts whose
// account is active and has an address), for each active production
// account its managers' addresses. An alias nobody would receive is left
// out. Names that fold to one alias are an error naming both.
func (t *Target) Desired(state *directory.State) ([]engine.Record, error) {
	var recs []engine.Record
	owners := map[string]string{}
	add := func(name, owner string, addrs []string) error {
		if len(addrs) == 0 {
			return nil
		}
		key := strings.ToLower(name)
		if !aliasName.MatchString(key) {
			return fmt.Errorf("%s: alias %q is not a name an aliases file can hold", owner, name)
		}
		if other, ok := owners[key]; ok {
			return fmt.Errorf("alias %s would belong to both %s and %s (names that differ only in case): rename one", key, other, owner)
		}
		owners[key] = owner
		recs = append(recs, engine.Record{Kind: KindAlias, Key: key, Value: key + ": " + strings.Join(addrs, ", ")})
		return nil
	}
	for _, c := range state.Collaborations {
		if !c.Provisioned {
			continue
		}
		for _, rs := range roleSuffixes {
			var addrs []string
			for _, uid := range c.Contacts[rs.role] {
				if u, ok := state.User(uid); ok && u.Status == directory.StatusActive && directory.ValidAddress(u.Mail) {
					addrs = append(addrs, u.Mail)
				}
			}
			if err := add(c.Name+rs.suffix, c.DN, unique(addrs)); err != nil {
				return nil, err
			}
		}
	}
	for _, p := range state.ProductionAccounts {
		if !p.Active {
			continue
		}
		var addrs []string
		for _, m := range p.Managers {
			if directory.ValidAddress(m) {
				addrs = append(addrs, m)
			}
		}
		if err := add(p.Name+managersSuffix, p.DN, unique(addrs)); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(recs, func(a, b engine.Record) int { return strings.Compare(a.Key, b.Key) })
	if len(t.Command) > 0 {
		recs = append(recs, engine.Record{Kind: KindCommand, Key: commandKey, Value: "done"})
	}
	return recs, nil
}

// unique sorts addresses and drops repeats (two contacts may share one).
func unique(addrs []string) []string {
	slices.Sort(addrs)
	return slices.Compact(addrs)
}

// Current implements engine.Target: the file's aliases (a missing file
// holds none) and, with a command, whether it ran for the file as it is.
func (t *Target) Current(ctx context.Context) ([]engine.Record, error) {
	data, err := os.ReadFile(t.Path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	recs, err := parse(t.Path, data)
	if err != nil {
		return nil, err
	}
	if len(t.Command) > 0 {
		state := "pending"
		if stamp, err := os.ReadFile(t.stampPath()); err == nil && string(stamp) == t.stamp(data) {
			state = "done"
		}
		recs = append(recs, engine.Record{Kind: KindCommand, Key: commandKey, Value: state})
	}
	return recs, nil
}

// parse reads an aliases file: "name: value, value" lines, continuation
// lines starting with white space, comments; name is used in errors.
func parse(name string, data []byte) ([]engine.Record, error) {
	var recs []engine.Record
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#"):
			continue
		case line[0] == ' ' || line[0] == '\t':
			if len(recs) == 0 {
				return nil, fmt.Errorf("%s:%d: a continuation line before any alias", name, n)
			}
			recs[len(recs)-1].Value += " " + strings.TrimSpace(line)
			continue
		}
		key, _, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%s:%d: no colon after the alias name", name, n)
		}
		recs = append(recs, engine.Record{Kind: KindAlias, Key: strings.ToLower(strings.TrimSpace(key)), Value: line})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	// The engine diffs records in (kind, key) order; a file edited by hand
	// may hold them in any.
	slices.SortStableFunc(recs, func(a, b engine.Record) int { return strings.Compare(a.Key, b.Key) })
	return recs, nil
}

// Recover implements engine.Recoverer: it removes the temporary files a
// killed apply left beside the file.
func (t *Target) Recover(ctx context.Context) error { return atomicfile.RemoveStale(t.Path) }

// Apply implements engine.Target: the file is rewritten whole from the
// desired aliases when any changed, then the command runs if the file
// changed or it has not succeeded for the file as it is.
func (t *Target) Apply(ctx context.Context, p *engine.Plan) error {
	aliasesChanged, commandPending := false, false
	for _, c := range p.Changes {
		switch c.Kind {
		case KindAlias:
			aliasesChanged = true
		case KindCommand:
			commandPending = true
		}
	}
	var data []byte
	if aliasesChanged {
		var b bytes.Buffer
		fmt.Fprintf(&b, "# Written by collabsync (target %s); edits are overwritten.\n", t.InstanceName)
		want := 0
		for r := range p.Desired.All() {
			if r.Kind == KindAlias {
				b.WriteString(r.Value)
				b.WriteByte('\n')
				want++
			}
		}
		verify := func(data []byte) error {
			recs, err := parse(t.Path, data)
			if err == nil && len(recs) != want {
				err = fmt.Errorf("parsed %d aliases, want %d", len(recs), want)
			}
			return err
		}
		if err := os.MkdirAll(filepath.Dir(t.Path), 0o755); err != nil {
			return err
		}
		if _, err := atomicfile.Write(t.Path, b.Bytes(), 0o644, verify); err != nil {
			return err
		}
		data = b.Bytes()
	}
	if len(t.Command) == 0 || !aliasesChanged && !commandPending {
		return nil
	}
	if data == nil {
		var err error
		if data, err = os.ReadFile(t.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	// A stale stamp first: killed between the write and the command, the
	// next run must still see the command as pending.
	if err := os.Remove(t.stampPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := t.run(ctx); err != nil {
		return err
	}
	_, err := atomicfile.Write(t.stampPath(), []byte(t.stamp(data)), 0o644, nil)
	return err
}

// run runs the command with its timeout, without a shell, in an
// environment that holds only a PATH.
func (t *Target) run(ctx context.Context) error {
	res, err := child.Run(ctx, child.Command{Path: t.Command[0], Args: t.Command[1:], Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		Dir: filepath.Dir(t.Path), Timeout: t.CommandTimeout})
	if t.Call != nil {
		t.Call(res.Outcome())
	}
	if err != nil {
		if errors.Is(err, child.ErrTimeout) {
			err = fmt.Errorf("timed out after %v: %w", t.CommandTimeout, err)
		}
		return fmt.Errorf("command %s after writing %s: %w: %s", t.Command[0], t.Path, err, res.Tail(500))
	}
	return nil
}

// stampPath is where the target notes the content the command last
// succeeded for.
func (t *Target) stampPath() string {
	return filepath.Join(filepath.Dir(t.Path), "."+filepath.Base(t.Path)+".collabsync-command")
}

// stamp identifies the file's content and the command run on it.
func (t *Target) stamp(data []byte) string {
	h := sha256.New()
	for _, a := range t.Command {
		fmt.Fprintf(h, "%d:%s\x00", len(a), a)
	}
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil)) + "\n"
}
