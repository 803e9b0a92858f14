// Package exec drives a site's own program as a target: each plan's
// changes to users, groups and memberships go to the program's standard
// input as one JSON document (schema collabsync.exec/v1, docs/EXEC.md).
// Exit 0 means applied; anything else is a failure the engine retries.
// The program runs without a shell, with a timeout and an environment
// that holds no secret, and is refused when anyone but root or collabsync
// could change it.
package exec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/collabsync/collabsync/internal/atomicfile"
	"github.com/collabsync/collabsync/internal/child"
	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/duration"
	"github.com/collabsync/collabsync/sync/engine"
)

// Schema names the document's format and version.
const Schema = "collabsync.exec/v1"

// Record kinds.
const (
	KindUser   = "user"
	KindGroup  = "group"
	KindMember = "member"
)

// User is a provisioned account as the program sees it.
type User struct {
	UID       string `json:"uid"`
	UIDNumber uint32 `json:"uid_number"`
	GIDNumber uint32 `json:"gid_number"`
	Name      string `json:"name"`
	Mail      string `json:"mail,omitempty"`
	Home      string `json:"home"`
	Shell     string `json:"shell"`
	// Production marks a production account (its owner in Collaboration).
	Production    bool   `json:"production,omitempty"`
	Collaboration string `json:"collaboration,omitempty"`
}

// Group is a provisioned collaboration.
type Group struct {
	Name      string   `json:"name"`
	GIDNumber uint32   `json:"gid_number"`
	Kind      string   `json:"kind"`
	Lists     []string `json:"lists,omitempty"`
}

// Member is a user in a group.
type Member struct {
	Group string `json:"group"`
	User  string `json:"user"`
}

// Change is one change of the document: old is absent for an add, new for
// a delete.
type Change struct {
	Op   engine.Op       `json:"op"`
	Kind string          `json:"kind"`
	Key  string          `json:"key"`
	Old  json.RawMessage `json:"old,omitempty"`
	New  json.RawMessage `json:"new,omitempty"`
}

// Document is what the program reads on its standard input.
type Document struct {
	Schema  string   `json:"schema"`
	Target  string   `json:"target"`
	Changes []Change `json:"changes"`
}

// Settings configure an exec target instance.
type Settings struct {
	// Program is the absolute path of the program; Args its arguments.
	Program string            `yaml:"program"`
	Args    []string          `yaml:"args"`
	Timeout duration.Duration `yaml:"timeout"`
	// StateFile keeps what the program last applied, so that a restart
	// sends only what changed meanwhile.
	StateFile string `yaml:"state_file"`
}

// Validate implements engine.Settings.
func (s *Settings) Validate() []engine.SettingProblem {
	var probs []engine.SettingProblem
	if !filepath.IsAbs(s.Program) {
		probs = append(probs, engine.SettingProblem{Key: "program", Msg: fmt.Sprintf("must be an absolute path (no shell, no PATH search), got %q", s.Program)})
	} else if err := child.Trusted(s.Program); err != nil {
		probs = append(probs, engine.SettingProblem{Key: "program", Msg: err.Error()})
	}
	if !filepath.IsAbs(s.StateFile) {
		probs = append(probs, engine.SettingProblem{Key: "state_file", Msg: fmt.Sprintf("must be an absolute path, got %q", s.StateFile)})
	} else if fi, err := os.Stat(filepath.Dir(s.StateFile)); err == nil && !child.Private(fi) {
		probs = append(probs, engine.SettingProblem{Key: "state_file", Msg: fmt.Sprintf("%s is writable by group or others (mode %v): "+
			"anyone could replace the state and have changes not sent", filepath.Dir(s.StateFile), fi.Mode().Perm())})
	}
	if s.Timeout <= 0 {
		probs = append(probs, engine.SettingProblem{Key: "timeout", Msg: "must be positive"})
	}
	return probs
}

// Kind declares the exec kind of target.
func Kind() engine.Kind {
	return engine.NewKind("exec", func() *Settings { return &Settings{Timeout: duration.Duration(60 * time.Second)} }, New)
}

// New builds an instance named name.
func New(name string, s *Settings, env engine.Env) *Target {
	env = env.Filled()
	return &Target{name: name, s: *s, call: env.Call}
}

// Target is the exec target.
type Target struct {
	name string
	s    Settings
	call func(string)
}

var (
	_ engine.Target   = (*Target)(nil)
	_ engine.Settings = (*Settings)(nil)
)

// Name implements engine.Target.
func (t *Target) Name() string { return t.name }

func value(v any) string {
	data, _ := json.Marshal(v) // plain structs: cannot fail
	return string(data)
}

// Desired implements engine.Target: every active user and production
// account, every provisioned collaboration and its active members.
func (t *Target) Desired(state *directory.State) ([]engine.Record, error) {
	var recs []engine.Record
	for _, c := range state.Collaborations {
		if !c.Provisioned {
			continue
		}
		recs = append(recs, engine.Record{Kind: KindGroup, Key: c.Name, Value: value(Group{Name: c.Name, GIDNumber: c.GIDNumber, Kind: string(c.Kind), Lists: c.Lists})})
		for _, m := range c.ActiveMembers {
			recs = append(recs, engine.Record{Kind: KindMember, Key: c.Name + " " + m, Value: value(Member{Group: c.Name, User: m})})
		}
	}
	for _, u := range state.Users {
		if u.Status == directory.StatusActive {
			recs = append(recs, engine.Record{Kind: KindUser, Key: u.UID, Value: value(User{UID: u.UID, UIDNumber: u.UIDNumber,
				GIDNumber: u.GIDNumber, Name: u.Name, Mail: u.Mail, Home: u.Home, Shell: u.Shell})})
		}
	}
	for _, p := range state.ProductionAccounts {
		if p.Active {
			recs = append(recs, engine.Record{Kind: KindUser, Key: p.Name, Value: value(User{UID: p.Name, UIDNumber: p.UIDNumber,
				GIDNumber: p.GIDNumber, Name: p.Name, Home: p.Home, Shell: p.Shell, Production: true, Collaboration: p.Collaboration})})
		}
	}
	return recs, nil // the engine orders them
}

// Current implements engine.Target: what the program last applied, as
// the state file keeps it (none before the first success).
func (t *Target) Current(ctx context.Context) ([]engine.Record, error) {
	data, err := os.ReadFile(t.s.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var recs []engine.Record
	if err := json.Unmarshal(data, &recs); err != nil {
		return nil, fmt.Errorf("%s: %w (remove it to send everything again)", t.s.StateFile, err)
	}
	return recs, nil
}

// Apply implements engine.Target: the plan's changes go to the program;
// once it exits 0 the state file records the desired state.
func (t *Target) Apply(ctx context.Context, p *engine.Plan) error {
	prog, err := child.OpenTrusted(t.s.Program)
	if err != nil {
		return err
	}
	defer prog.Close()
	doc := Document{Schema: Schema, Target: t.name, Changes: make([]Change, 0, len(p.Changes))}
	for _, c := range p.Changes {
		ch := Change{Op: c.Op, Kind: c.Kind, Key: c.Key}
		if c.Old != "" {
			ch.Old = json.RawMessage(c.Old)
		}
		if c.New != "" {
			ch.New = json.RawMessage(c.New)
		}
		doc.Changes = append(doc.Changes, ch)
	}
	input, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	if err := t.run(ctx, prog, input); err != nil {
		return err
	}
	state, err := json.Marshal(p.Desired)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(t.s.StateFile), 0o700); err != nil {
		return err
	}
	_, err = atomicfile.Write(t.s.StateFile, state, 0o600, func(data []byte) error {
		var recs []engine.Record
		return json.Unmarshal(data, &recs)
	})
	return err
}

// run runs the program (the file checked) with the document on its
// standard input.
func (t *Target) run(ctx context.Context, prog *os.File, input []byte) error {
	res, err := child.Run(ctx, child.Command{Path: t.s.Program, File: prog, Args: t.s.Args, Stdin: input,
		Env:     []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "COLLABSYNC_TARGET=" + t.name, "COLLABSYNC_SCHEMA=" + Schema},
		Timeout: time.Duration(t.s.Timeout)})
	t.call(res.Outcome())
	if err != nil {
		if errors.Is(err, child.ErrTimeout) {
			err = fmt.Errorf("no exit within %v: %w", time.Duration(t.s.Timeout), err)
		}
		return fmt.Errorf("program %s: %w: %s", t.s.Program, err, res.Tail(500))
	}
	return nil
}
