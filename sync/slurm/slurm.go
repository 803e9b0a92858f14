// Package slurm keeps Slurm's accounting database in step with the
// directory through sacctmgr: an account per active collaboration under a
// managed parent account, with its fairshare; an association per active
// member; each user's default account their administrative collaboration.
// Accounts outside the managed parent, and their associations, are never
// changed.
package slurm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/collabsync/collabsync/internal/child"
	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/duration"
	"github.com/collabsync/collabsync/sync/engine"
)

// Record kinds: a managed account ("fairshare=N"), a user's association
// with one ("<account> <user>", "fairshare=..."), a user's default
// account (the user, the account).
const (
	KindAccount = "account"
	KindAssoc   = "assoc"
	KindDefault = "default"
)

// slurmName is what Slurm keeps of an account or user name: lower case.
var slurmName = regexp.MustCompile(`^[a-z0-9_][a-z0-9_.-]*$`)

// Settings configure a slurm target instance.
type Settings struct {
	// Sacctmgr is the program's absolute path.
	Sacctmgr string `yaml:"sacctmgr"`
	// SlurmConf, when set, is passed as SLURM_CONF.
	SlurmConf string            `yaml:"slurm_conf"`
	Cluster   string            `yaml:"cluster"`
	Parent    string            `yaml:"parent"`
	Timeout   duration.Duration `yaml:"timeout"`
	// Fairshare is a collaboration's when its entry has none.
	Fairshare int `yaml:"fairshare"`
	// UserFairshare is each association's: "parent" or a number.
	UserFairshare string `yaml:"user_fairshare"`
	// Organization is written on the accounts collabsync creates.
	Organization string `yaml:"organization"`
	// LoadThreshold: a plan adding at least this many associations adds
	// them, with its new accounts, through one 'sacctmgr load' of a file
	// instead of a command per account (a first sync); 0 never does.
	LoadThreshold int `yaml:"load_threshold"`
	// LoadTimeout bounds that load (20,000 associations take slurmdbd
	// about a minute).
	LoadTimeout duration.Duration `yaml:"load_timeout"`
	// ForeignUsers says what becomes of the associations (and default
	// accounts) on managed accounts of users the directory does not have,
	// made by hand: keep (the default) or remove.
	ForeignUsers string `yaml:"foreign_users"`
}

// What becomes of hand-made users' associations (Settings.ForeignUsers).
const (
	ForeignKeep   = "keep"
	ForeignRemove = "remove"
)

// Validate implements engine.Settings.
func (s *Settings) Validate() []engine.SettingProblem {
	var probs []engine.SettingProblem
	bad := func(key, format string, args ...any) {
		probs = append(probs, engine.SettingProblem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if !filepath.IsAbs(s.Sacctmgr) {
		bad("sacctmgr", "must be an absolute path (no shell, no PATH search), got %q", s.Sacctmgr)
	} else if err := child.Trusted(s.Sacctmgr); err != nil {
		bad("sacctmgr", "%v", err)
	}
	if s.SlurmConf != "" && !filepath.IsAbs(s.SlurmConf) {
		bad("slurm_conf", "must be an absolute path, got %q", s.SlurmConf)
	}
	if !slurmName.MatchString(s.Cluster) {
		bad("cluster", "must be the cluster's name as Slurm has it (lower case), got %q", s.Cluster)
	}
	if !slurmName.MatchString(s.Parent) || s.Parent == "root" {
		bad("parent", "must be the account (not root) under which collaborations' accounts live, got %q", s.Parent)
	}
	if s.Timeout <= 0 {
		bad("timeout", "must be positive")
	}
	if s.Fairshare <= 0 {
		bad("fairshare", "must be a positive number of shares")
	}
	if n, err := strconv.Atoi(s.UserFairshare); s.UserFairshare != "parent" && (err != nil || n <= 0) {
		bad("user_fairshare", "must be parent or a positive number, got %q", s.UserFairshare)
	}
	if strings.ContainsAny(s.Organization, "'\"=,:\n") {
		bad("organization", "must not hold quotes, =, : or commas")
	}
	if s.LoadThreshold < 0 {
		bad("load_threshold", "must not be negative")
	}
	if s.LoadTimeout <= 0 {
		bad("load_timeout", "must be positive")
	}
	if s.ForeignUsers != ForeignKeep && s.ForeignUsers != ForeignRemove {
		bad("foreign_users", "must be %s or %s, got %q", ForeignKeep, ForeignRemove, s.ForeignUsers)
	}
	return probs
}

// Kind declares the slurm kind of target.
func Kind() engine.Kind {
	return engine.NewKind("slurm", func() *Settings {
		return &Settings{Sacctmgr: "/usr/bin/sacctmgr", Parent: "collaborations", Timeout: duration.Duration(60 * time.Second),
			Fairshare: 1, UserFairshare: "parent", Organization: "collabsync", LoadThreshold: 200,
			LoadTimeout: duration.Duration(30 * time.Minute), ForeignUsers: ForeignKeep}
	}, New)
}

// Target is the slurm target.
type Target struct {
	name string
	s    Settings
	log  *slog.Logger
	once engine.Once
	call func(string)

	mu sync.Mutex
	// foreign are accounts outside the managed parent: a collaboration of
	// the same name gets no account. ownDefault are users whose default
	// account is not managed: theirs is left alone.
	foreign    map[string]bool
	ownDefault map[string]bool
	// seen are the users' associations and default accounts on managed
	// accounts the last read found; kept those of users the directory
	// does not have (foreign_users: keep), as of the last Desired.
	seen, kept []engine.Record
	// blocked are associations a removal could not take (running jobs).
	blocked []string
}

var (
	_ engine.Target   = (*Target)(nil)
	_ engine.Noter    = (*Target)(nil)
	_ engine.Settings = (*Settings)(nil)
)

// New returns a target for validated settings.
func New(name string, s *Settings, env engine.Env) *Target {
	env = env.Filled()
	return &Target{name: name, s: *s, log: env.Log, call: env.Call, foreign: map[string]bool{}, ownDefault: map[string]bool{}}
}

// Name implements engine.Target.
func (t *Target) Name() string { return t.name }

func (t *Target) userFairshare() string { return "fairshare=" + t.s.UserFairshare }

// Desired implements engine.Target.
func (t *Target) Desired(state *directory.State) ([]engine.Record, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var accounts, assocs []engine.Record
	defaults := map[string]string{} // user → account
	admin := map[string]string{}    // user → administrative collaboration's account
	userAccounts := map[string][]string{}
	for i := range state.Collaborations {
		c := &state.Collaborations[i]
		if !c.Provisioned {
			continue
		}
		acct := strings.ToLower(c.Name)
		if !slurmName.MatchString(acct) || acct == t.s.Parent || acct == "root" || t.foreign[acct] {
			t.once.Warn(t.log, c.DN, "collaboration's account name is taken by an account collabsync does not manage (or is not a Slurm name); no account for it",
				"dn", c.DN, "account", acct, "parent", t.s.Parent)
			continue
		}
		fs := c.Fairshare
		if fs <= 0 {
			fs = t.s.Fairshare
		}
		accounts = append(accounts, engine.Record{Kind: KindAccount, Key: acct, Value: "fairshare=" + strconv.Itoa(fs)})
		for _, uid := range c.ActiveMembers {
			user := strings.ToLower(uid)
			assocs = append(assocs, engine.Record{Kind: KindAssoc, Key: acct + " " + user, Value: t.userFairshare()})
			userAccounts[user] = append(userAccounts[user], acct)
			if c.Kind == directory.KindAdministrative {
				if prev, ok := admin[user]; !ok || acct < prev { // several is a rule 1 violation: the first by name
					admin[user] = acct
				}
			}
		}
	}
	for user, accts := range userAccounts {
		if t.ownDefault[user] {
			continue
		}
		def, ok := admin[user]
		if !ok {
			def = slices.Min(accts)
		}
		defaults[user] = def
	}
	users := make([]string, 0, len(defaults))
	for u := range defaults {
		users = append(users, u)
	}
	slices.Sort(users)
	recs := append(accounts, assocs...)
	for _, u := range users {
		recs = append(recs, engine.Record{Kind: KindDefault, Key: u, Value: defaults[u]})
	}
	t.kept = t.handMade(state, accounts)
	recs = append(recs, t.kept...)
	sortRecords(recs)
	return recs, nil
}

// handMade returns, under foreign_users: keep, the associations and
// default accounts the last read found on accounts still wanted for users
// the directory does not have (by any case): made by hand, left alone.
// A directory user's are the directory's to decide.
func (t *Target) handMade(state *directory.State, accounts []engine.Record) []engine.Record {
	if t.s.ForeignUsers != ForeignKeep || len(t.seen) == 0 {
		return nil
	}
	known := make(map[string]bool, len(state.Users)+len(state.ProductionAccounts))
	for _, u := range state.Users {
		known[strings.ToLower(u.UID)] = true
	}
	for _, p := range state.ProductionAccounts {
		known[strings.ToLower(p.Name)] = true
	}
	wanted := make(map[string]bool, len(accounts))
	for _, a := range accounts {
		wanted[a.Key] = true
	}
	var out []engine.Record
	for _, r := range t.seen {
		switch r.Kind {
		case KindAssoc:
			acct, user, _ := strings.Cut(r.Key, " ")
			if !known[user] && wanted[acct] {
				out = append(out, r)
			}
		case KindDefault:
			if !known[r.Key] && wanted[r.Value] {
				out = append(out, r)
			}
		}
	}
	return out
}

// Notes implements engine.Noter: removals running jobs hold back.
func (t *Target) Notes() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var notes []string
	if len(t.blocked) > 0 {
		notes = append(notes, "kept until their running jobs end (retried): "+strings.Join(t.blocked, ", "))
	}
	if n := len(t.kept); n > 0 {
		var names []string
		for _, r := range t.kept[:min(n, 5)] {
			names = append(names, r.Kind+" "+r.Key)
		}
		more := ""
		if n > 5 {
			more = fmt.Sprintf(" and %d more", n-5)
		}
		notes = append(notes, fmt.Sprintf("keeps %d record(s) of users the directory does not have, made by hand (foreign_users: keep): %s%s",
			n, strings.Join(names, ", "), more))
	}
	return notes
}

// sortRecords puts records in the engine's (kind, key) order.
func sortRecords(recs []engine.Record) {
	slices.SortFunc(recs, func(a, b engine.Record) int {
		if c := strings.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
}

// Current implements engine.Target: the managed accounts, their users'
// associations and those users' default accounts, as sacctmgr shows them.
func (t *Target) Current(ctx context.Context) ([]engine.Record, error) {
	assocs, err := t.sacctmgr(ctx, "-P", "-n", "show", "assoc", "where", "cluster="+t.s.Cluster, "format=Account,User,ParentName,Fairshare")
	if err != nil {
		return nil, err
	}
	users, err := t.sacctmgr(ctx, "-P", "-n", "show", "user", "format=User,DefaultAccount")
	if err != nil {
		return nil, err
	}
	st, err := parseState(assocs, users, t.s.Parent)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.foreign, t.ownDefault = st.foreign, st.ownDefault
	t.seen = t.seen[:0]
	for _, r := range st.recs {
		if r.Kind == KindAssoc || r.Kind == KindDefault {
			t.seen = append(t.seen, r)
		}
	}
	t.mu.Unlock()
	return st.recs, nil
}

// slurmState is what sacctmgr's listings say: the managed records in
// (kind, key) order, the accounts outside the managed parent, and the
// users whose default account is not a managed one.
type slurmState struct {
	recs       []engine.Record
	foreign    map[string]bool
	ownDefault map[string]bool
}

// parseState reads 'sacctmgr -P -n show assoc format=Account,User,
// ParentName,Fairshare' and 'show user format=User,DefaultAccount'.
func parseState(assocs, users, parent string) (*slurmState, error) {
	st := &slurmState{foreign: map[string]bool{}, ownDefault: map[string]bool{}}
	managed := map[string]bool{}
	type assoc struct{ acct, user, share string }
	var userAssocs []assoc
	for n, line := range strings.Split(strings.TrimSpace(assocs), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "|")
		if len(f) != 4 {
			return nil, fmt.Errorf("sacctmgr show assoc, line %d: %d fields, want 4: %q", n+1, len(f), line)
		}
		acct, user, par, share := strings.ToLower(f[0]), strings.ToLower(f[1]), strings.ToLower(f[2]), strings.ToLower(f[3])
		switch {
		case user != "":
			userAssocs = append(userAssocs, assoc{acct, user, share})
		case par == parent && acct != "":
			managed[acct] = true
			st.recs = append(st.recs, engine.Record{Kind: KindAccount, Key: acct, Value: "fairshare=" + share})
		case acct != "":
			st.foreign[acct] = true
		}
	}
	inManaged := map[string]bool{}
	for _, a := range userAssocs {
		if managed[a.acct] {
			st.recs = append(st.recs, engine.Record{Kind: KindAssoc, Key: a.acct + " " + a.user, Value: "fairshare=" + a.share})
			inManaged[a.user] = true
		}
	}
	for n, line := range strings.Split(strings.TrimSpace(users), "\n") {
		if line == "" {
			continue
		}
		user, def, ok := strings.Cut(strings.ToLower(line), "|")
		if !ok {
			return nil, fmt.Errorf("sacctmgr show user, line %d: %q", n+1, line)
		}
		switch {
		case !managed[def]:
			st.ownDefault[user] = true // a default account set by hand: left alone
		case inManaged[user]:
			st.recs = append(st.recs, engine.Record{Kind: KindDefault, Key: user, Value: def})
		}
	}
	sortRecords(st.recs)
	// A listing holds one line per association; should it hold two, the
	// first counts (the engine's diff does the same).
	st.recs = slices.CompactFunc(st.recs, func(a, b engine.Record) bool { return a.Kind == b.Kind && a.Key == b.Key })
	return st, nil
}

// Apply implements engine.Target, in the order Slurm needs: accounts
// (the parent first), their fairshare, associations, default accounts
// (before the old default's association goes), removals of associations
// and then of accounts. A removal that running jobs block is kept and
// reported; the rest of the plan still applies.
func (t *Target) Apply(ctx context.Context, p *engine.Plan) error {
	var addAccounts, setShares map[string][]string = map[string][]string{}, map[string][]string{}
	var delAccounts []string
	addAssocs := map[string][]string{} // user → accounts
	var delAssocs [][2]string
	var defaults [][2]string
	newUsers := map[string]bool{}
	oldDefault := map[string]string{} // users losing their managed default: which it was
	for _, c := range p.Changes {
		switch c.Kind {
		case KindAccount:
			switch c.Op {
			case engine.OpAdd:
				addAccounts[c.New] = append(addAccounts[c.New], c.Key)
			case engine.OpModify:
				setShares[c.New] = append(setShares[c.New], c.Key)
			case engine.OpDelete:
				delAccounts = append(delAccounts, c.Key)
			}
		case KindAssoc:
			acct, user, _ := strings.Cut(c.Key, " ")
			switch c.Op {
			case engine.OpAdd:
				addAssocs[user] = append(addAssocs[user], acct)
			case engine.OpDelete:
				delAssocs = append(delAssocs, [2]string{acct, user})
			}
		case KindDefault:
			if c.Op == engine.OpAdd {
				newUsers[c.Key] = true // no managed default yet: maybe no Slurm user at all
			}
			if c.Op == engine.OpDelete {
				oldDefault[c.Key] = c.Old
			} else {
				defaults = append(defaults, [2]string{c.Key, c.New})
			}
		}
	}
	cluster := "cluster=" + t.s.Cluster
	if len(addAccounts) > 0 {
		if err := t.add(ctx, "account", t.s.Parent, "parent=root", cluster, "description=accounts of collaborations",
			"organization="+t.s.Organization); err != nil {
			return err
		}
	}
	def := map[string]string{}
	for _, d := range defaults {
		def[d[0]] = d[1]
	}
	byAccount := map[string][]string{}
	assocAdds := 0
	for user, accts := range addAssocs {
		for _, a := range accts {
			byAccount[a] = append(byAccount[a], user)
			assocAdds++
		}
	}
	if t.s.LoadThreshold > 0 && assocAdds >= t.s.LoadThreshold {
		if err := t.load(ctx, addAccounts, byAccount, def, newUsers); err != nil {
			return err
		}
		addAccounts, byAccount = nil, nil // done
	}
	for _, share := range sortedKeys(addAccounts) {
		for _, names := range chunks(addAccounts[share]) {
			if err := t.add(ctx, "account", strings.Join(names, ","), "parent="+t.s.Parent, cluster, share,
				"description=collaboration", "organization="+t.s.Organization); err != nil {
				return err
			}
		}
	}
	for _, share := range sortedKeys(setShares) {
		for _, names := range chunks(setShares[share]) {
			if _, err := t.sacctmgr(ctx, "-i", "modify", "account", "where", "name="+strings.Join(names, ","), cluster, "set", share); err != nil {
				return err
			}
		}
	}
	// Associations, one command per account: first the users whose
	// default it becomes (a new user is created with it), then the others.
	for _, asDefault := range []bool{true, false} {
		for _, acct := range sortedKeys(byAccount) {
			var users []string
			for _, u := range byAccount[acct] {
				if (def[u] == acct) == asDefault {
					users = append(users, u)
				}
			}
			for _, names := range chunks(users) {
				args := []string{"account=" + acct, cluster, t.userFairshare()}
				if asDefault {
					args = append(args, "defaultaccount="+acct)
				}
				if err := t.add(ctx, "user", strings.Join(names, ","), args...); err != nil {
					return err
				}
			}
		}
	}
	// Default accounts that change, one command per account.
	moved := map[string][]string{}
	for _, d := range defaults {
		if !newUsers[d[0]] {
			moved[d[1]] = append(moved[d[1]], d[0])
		}
	}
	for _, acct := range sortedKeys(moved) {
		for _, names := range chunks(moved[acct]) {
			if _, err := t.sacctmgr(ctx, "-i", "modify", "user", "where", "name="+strings.Join(names, ","), cluster, "set", "defaultaccount="+acct); err != nil {
				return err
			}
		}
	}
	// Removals, one command per account, the users' default accounts
	// last: when running jobs keep another association of a user losing
	// everything, the default stays with it, so no user is ever left
	// without a default account.
	var blocked []string
	blockedUser := map[string]bool{}
	for _, defaultsPass := range []bool{false, true} {
		remove := map[string][]string{}
		for _, a := range delAssocs {
			isDefault := a[0] == oldDefault[a[1]]
			switch {
			case isDefault != defaultsPass:
			case isDefault && blockedUser[a[1]]:
				blocked = append(blocked, a[0]+"/"+a[1]+" (the default account)")
			default:
				remove[a[0]] = append(remove[a[0]], a[1])
			}
		}
		for _, acct := range sortedKeys(remove) {
			for _, names := range chunks(remove[acct]) {
				kept, err := t.removeAssocs(ctx, acct, names)
				if err != nil {
					return err
				}
				for _, u := range kept {
					blocked = append(blocked, acct+"/"+u)
					blockedUser[u] = true
				}
			}
		}
	}
	for _, acct := range delAccounts {
		_, err := t.sacctmgr(ctx, "-i", "delete", "account", "where", "name="+acct, cluster)
		switch {
		case isRunningJobs(err):
			blocked = append(blocked, acct)
		case err != nil && !isNothing(err):
			return err
		}
	}
	t.mu.Lock()
	t.blocked = blocked
	t.mu.Unlock()
	if len(blocked) > 0 {
		return fmt.Errorf("%w: kept until their jobs end, retried: %s", ErrRunningJobs, strings.Join(blocked, ", "))
	}
	return nil
}

// load adds accounts and associations with one 'sacctmgr load' of a flat
// file, which merges into what exists: other accounts, existing users'
// default accounts and settings stay. As with the commands, each user's
// association with the account that becomes their default comes first,
// so that a new user is created with it. Names are Slurm names (checked
// when planned) and settings are validated: nothing in the file needs
// quoting.
func (t *Target) load(ctx context.Context, addAccounts map[string][]string, byAccount map[string][]string, def map[string]string, newUsers map[string]bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Cluster - '%s'\nParent - '%s'\n", t.s.Cluster, t.s.Parent)
	for _, share := range sortedKeys(addAccounts) {
		n := strings.TrimPrefix(share, "fairshare=")
		for _, acct := range addAccounts[share] {
			fmt.Fprintf(&b, "Account - '%s':Description='collaboration':Organization='%s':Fairshare=%s\n", acct, t.s.Organization, n)
		}
	}
	userShare := t.s.UserFairshare
	for _, asDefault := range []bool{true, false} {
		for _, acct := range sortedKeys(byAccount) {
			var lines []string
			for _, u := range byAccount[acct] {
				switch {
				case (def[u] == acct) != asDefault:
				case asDefault && newUsers[u]:
					lines = append(lines, fmt.Sprintf("User - '%s':DefaultAccount='%s':Fairshare=%s", u, acct, userShare))
				default:
					lines = append(lines, fmt.Sprintf("User - '%s':Fairshare=%s", u, userShare))
				}
			}
			if len(lines) > 0 {
				slices.Sort(lines)
				fmt.Fprintf(&b, "Parent - '%s'\n%s\n", acct, strings.Join(lines, "\n"))
			}
		}
	}
	f, err := os.CreateTemp("", "collabsync-sacctmgr-*.cfg")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	_, err = t.run(ctx, time.Duration(t.s.LoadTimeout), "-i", "load", "file="+f.Name())
	if isNothing(err) {
		return nil
	}
	return err
}

// removeAssocs removes users' associations with an account in one
// command; when running jobs refuse it, one user at a time, and returns
// the users whose jobs keep theirs.
func (t *Target) removeAssocs(ctx context.Context, acct string, users []string) (kept []string, err error) {
	cluster := "cluster=" + t.s.Cluster
	_, err = t.sacctmgr(ctx, "-i", "delete", "user", "where", "name="+strings.Join(users, ","), "account="+acct, cluster)
	switch {
	case err == nil || isNothing(err):
		return nil, nil
	case !isRunningJobs(err):
		return nil, err
	case len(users) == 1:
		return users, nil
	}
	for _, u := range users {
		k, err := t.removeAssocs(ctx, acct, []string{u})
		if err != nil {
			return nil, err
		}
		kept = append(kept, k...)
	}
	return kept, nil
}

// ErrRunningJobs: removals running jobs blocked.
var ErrRunningJobs = errors.New("associations with running jobs cannot be removed")

// add runs sacctmgr add; re-adding what exists is no error.
func (t *Target) add(ctx context.Context, what, names string, args ...string) error {
	_, err := t.sacctmgr(ctx, append([]string{"-i", "add", what, names}, args...)...)
	if isNothing(err) {
		return nil
	}
	return err
}

// sacctmgrError is sacctmgr exiting non-zero.
type sacctmgrError struct {
	args   []string
	code   int
	output string
}

func (e *sacctmgrError) Error() string {
	return fmt.Sprintf("sacctmgr %s: exit %d: %s", strings.Join(e.args, " "), e.code, e.output)
}

// isNothing: sacctmgr's exit 1 for "Nothing new added." / "Nothing deleted".
func isNothing(err error) bool {
	var se *sacctmgrError
	return errors.As(err, &se) && strings.Contains(se.output, "Nothing")
}

// isRunningJobs: a removal refused because jobs are running.
func isRunningJobs(err error) bool {
	var se *sacctmgrError
	return errors.As(err, &se) && strings.Contains(strings.ToLower(se.output), "job(s) active")
}

// sacctmgr runs the program with the timeout, without a shell.
func (t *Target) sacctmgr(ctx context.Context, args ...string) (string, error) {
	return t.run(ctx, time.Duration(t.s.Timeout), args...)
}

// run runs sacctmgr with a timeout of its own. Its listings are read
// whole (they are parsed); what it says besides is kept up to a cap.
func (t *Target) run(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if t.s.SlurmConf != "" {
		env = append(env, "SLURM_CONF="+t.s.SlurmConf)
	}
	var stdout bytes.Buffer
	res, err := child.Run(ctx, child.Command{Path: t.s.Sacctmgr, Args: args, Env: env, Stdout: &stdout, Timeout: timeout})
	t.call(res.Outcome())
	var exit *exec.ExitError
	switch {
	case errors.Is(err, child.ErrTimeout):
		return "", fmt.Errorf("sacctmgr %s: no answer within %v: %w", strings.Join(args, " "), timeout, err)
	case errors.As(err, &exit):
		msg := strings.TrimSpace(stdout.String() + " " + res.Tail(500))
		if len(msg) > 500 {
			msg = msg[:500] + "…"
		}
		return "", &sacctmgrError{args: args, code: exit.ExitCode(), output: msg}
	case err != nil:
		return "", fmt.Errorf("sacctmgr: %w", err)
	}
	return stdout.String(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// chunks splits names so that no command line grows without bound.
func chunks(names []string) [][]string {
	slices.Sort(names)
	var out [][]string
	for len(names) > 0 {
		n := min(len(names), 200)
		out = append(out, names[:n])
		names = names[n:]
	}
	return out
}
