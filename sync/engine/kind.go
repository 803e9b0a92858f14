package engine

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// Kind is one kind of target (nss, mailman, slurm ...): its settings and
// how an instance is built. The configuration names instances of kinds;
// each kind's package declares its Kind, and one list registers them all.
type Kind struct {
	Name string
	// NewSettings returns a pointer to a new settings struct of the kind
	// (YAML tags name its keys), holding the defaults: the configuration
	// decodes an instance's own keys into it.
	NewSettings func() Settings
	// New builds an instance named name from settings that validated.
	New func(name string, s Settings, env Env) Target
}

// NewKind declares a kind: defaults returns its settings (a pointer to
// the kind's struct) holding the defaults, build makes an instance from
// settings that validated, with the environment filled in. The one
// conversion from the configuration's Settings to the kind's own is here.
func NewKind[S Settings, T Target](name string, defaults func() S, build func(name string, s S, env Env) T) Kind {
	return Kind{
		Name:        name,
		NewSettings: func() Settings { return defaults() },
		New: func(instance string, s Settings, env Env) Target {
			return build(instance, s.(S), env.Filled())
		},
	}
}

// Env is what a target instance gets from the process that runs it.
type Env struct {
	// Log is scoped to the instance.
	Log *slog.Logger
	// Call counts one call to the downstream system by its result: an
	// HTTP status code, "error" for no answer, a command's "exit 1".
	Call func(result string)
}

// Once logs each distinct message once per target instance: what a
// target says of the directory on every run (a name it cannot use) would
// otherwise repeat with every change under serve.
type Once struct {
	mu   sync.Mutex
	seen map[string]bool
}

// Warn logs at warning level unless the same key was logged before.
func (o *Once) Warn(log *slog.Logger, key, msg string, args ...any) {
	o.mu.Lock()
	first := !o.seen[key]
	if o.seen == nil {
		o.seen = map[string]bool{}
	}
	o.seen[key] = true
	o.mu.Unlock()
	if first {
		log.Warn(msg, args...)
	}
}

// NopCall is an Env.Call that counts nothing.
func NopCall(string) {}

// Filled returns the environment with what is unset filled in: a logger
// that discards, a counter that counts nothing.
func (e Env) Filled() Env {
	if e.Log == nil {
		e.Log = slog.New(slog.DiscardHandler)
	}
	if e.Call == nil {
		e.Call = NopCall
	}
	return e
}

// Settings are a kind's own configuration keys of one instance.
type Settings interface {
	// Validate reports what is wrong, by key ("dir") and message.
	Validate() []SettingProblem
}

// SourceChecker is a kind's settings that could write into the very
// directory collabsync reads (a target publishing to LDAP): checked
// against the source's server URIs and search bases, so that its own
// entries are never read back as users or collaborations.
type SourceChecker interface {
	CheckSource(uris, bases []string) []SettingProblem
}

// SettingProblem is one invalid setting.
type SettingProblem struct {
	Key, Msg string
}

// Registry is the set of known kinds.
type Registry []Kind

// Lookup finds a kind by name.
func (r Registry) Lookup(name string) (Kind, bool) {
	for _, k := range r {
		if k.Name == name {
			return k, true
		}
	}
	return Kind{}, false
}

// Names lists the kinds, sorted, for messages.
func (r Registry) Names() string {
	names := make([]string, 0, len(r))
	for _, k := range r {
		names = append(names, k.Name)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// Check panics on a registry a programmer got wrong (a kind twice, or
// without its functions): it is fixed at build time, never configured.
func (r Registry) Check() Registry {
	seen := map[string]bool{}
	for _, k := range r {
		if seen[k.Name] || k.Name == "" || k.NewSettings == nil || k.New == nil {
			panic(fmt.Sprintf("target registry: kind %q is declared twice or incompletely", k.Name))
		}
		seen[k.Name] = true
	}
	return r
}
