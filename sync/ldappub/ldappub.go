// Package ldappub publishes the provisioned users and groups into a
// directory subtree (target kind "ldap"), as standard posixAccount and
// posixGroup (memberUid) entries, for the centre's LDAP replicas and the
// SSSD or nslcd of every node to serve: the evaluated view, with the
// account rules applied, not the source directory's.
//
// Entries it creates carry a marker (description: the target's marker);
// an entry under the base without it is never modified nor deleted, and
// an entry in the way of a new one is an error naming its DN. A change
// costs the writes it needs: a membership is one modify of one memberUid
// value, not a rewrite of the group.
package ldappub

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/ldapconn"
	"github.com/collabsync/collabsync/sync/engine"
)

// Record kinds.
const (
	KindUser   = "user"
	KindGroup  = "group"
	KindMember = "member"
)

// Settings configure an ldap target instance: the server published to
// (the source's or another), its own bind, and the base DN.
type Settings struct {
	ldapconn.Settings `yaml:",inline"`
	BaseDN            string `yaml:"base_dn"`
}

// Validate implements engine.Settings.
func (s *Settings) Validate() []engine.SettingProblem {
	var probs []engine.SettingProblem
	for _, p := range s.Settings.Validate() {
		probs = append(probs, engine.SettingProblem{Key: p.Key, Msg: p.Msg})
	}
	if dn, err := ldap.ParseDN(s.BaseDN); err != nil || len(dn.RDNs) < 2 {
		probs = append(probs, engine.SettingProblem{Key: "base_dn", Msg: fmt.Sprintf("want a DN below the suffix (ou=hpc,dc=example,dc=org), got %q", s.BaseDN)})
	}
	return probs
}

// CheckSource implements engine.SourceChecker: publishing on a server
// collabsync reads, inside (or above) one of its search bases, would read
// the published entries back as users or collaborations.
func (s *Settings) CheckSource(uris, bases []string) []engine.SettingProblem {
	pub, err := url.Parse(s.URL)
	if err != nil {
		return nil // Validate says so
	}
	base, err := ldap.ParseDN(s.BaseDN)
	if err != nil {
		return nil
	}
	same := false
	for _, raw := range uris {
		if u, err := url.Parse(raw); err == nil && ldapconn.HostPort(u) == ldapconn.HostPort(pub) {
			same = true
		}
	}
	if !same {
		return nil
	}
	for _, b := range bases {
		src, err := ldap.ParseDN(b)
		if err != nil || b == "" {
			continue
		}
		if src.EqualFold(base) || src.AncestorOfFold(base) || base.AncestorOfFold(src) {
			return []engine.SettingProblem{{Key: "base_dn", Msg: fmt.Sprintf("%s overlaps %s, which collabsync reads on the same server (%s): "+
				"the published entries would be read back as users or collaborations; publish outside the source's search bases", s.BaseDN, b, s.URL)}}
		}
	}
	return nil
}

// Kind declares the ldap kind of target.
func Kind() engine.Kind {
	return engine.NewKind("ldap", func() *Settings {
		return &Settings{Settings: ldapconn.Defaults()}
	}, New)
}

// New builds an instance named name.
func New(name string, s *Settings, env engine.Env) *Target {
	env = env.Filled()
	return &Target{name: name, s: *s, call: env.Call, marker: "managed by collabsync target " + name}
}

// Target is the ldap target.
type Target struct {
	name   string
	s      Settings
	call   func(string)
	marker string
}

var (
	_ engine.Target        = (*Target)(nil)
	_ engine.Settings      = (*Settings)(nil)
	_ engine.SourceChecker = (*Settings)(nil)
)

// Name implements engine.Target.
func (t *Target) Name() string { return t.name }

func (t *Target) peopleDN() string { return "ou=people," + t.s.BaseDN }
func (t *Target) groupsDN() string { return "ou=groups," + t.s.BaseDN }
func (t *Target) userDN(uid string) string {
	return "uid=" + ldap.EscapeDN(uid) + "," + t.peopleDN()
}
func (t *Target) groupDN(name string) string {
	return "cn=" + ldap.EscapeDN(name) + "," + t.groupsDN()
}

// userValue is a user record's value: what its entry holds, tab-separated
// (no field can hold a tab: the model refuses control characters).
func userValue(uidNumber, gidNumber uint32, name, home, shell string) string {
	return strconv.FormatUint(uint64(uidNumber), 10) + "\t" + strconv.FormatUint(uint64(gidNumber), 10) + "\t" + home + "\t" + shell + "\t" + name
}

// Desired implements engine.Target: every active user and production
// account, every provisioned collaboration and its active members.
func (t *Target) Desired(state *directory.State) ([]engine.Record, error) {
	var recs []engine.Record
	for _, c := range state.Collaborations {
		if !c.Provisioned {
			continue
		}
		recs = append(recs, engine.Record{Kind: KindGroup, Key: c.Name, Value: strconv.FormatUint(uint64(c.GIDNumber), 10)})
		for _, m := range c.ActiveMembers {
			recs = append(recs, engine.Record{Kind: KindMember, Key: c.Name + " " + m})
		}
	}
	for _, u := range state.Users {
		if u.Status == directory.StatusActive {
			name := u.Name
			if name == "" {
				name = u.UID
			}
			recs = append(recs, engine.Record{Kind: KindUser, Key: u.UID, Value: userValue(u.UIDNumber, u.GIDNumber, name, u.Home, u.Shell)})
		}
	}
	for _, p := range state.ProductionAccounts {
		if p.Active {
			recs = append(recs, engine.Record{Kind: KindUser, Key: p.Name, Value: userValue(p.UIDNumber, p.GIDNumber, p.Name, p.Home, p.Shell)})
		}
	}
	return recs, nil
}

// conn dials, secures and binds; the connection is closed when ctx ends.
func (t *Target) conn(ctx context.Context) (*ldap.Conn, func(), error) {
	c, done, err := ldapconn.Dial(ctx, t.s.Settings)
	if err != nil {
		t.call("error")
		return nil, nil, err
	}
	return c, done, nil
}

// Current implements engine.Target: the entries under the base that
// carry the marker, read a page at a time and turned into records as
// they come (the subtree is never held whole: 110k entries decoded by
// go-ldap are gigabytes of garbage, a few megabytes at a time here).
func (t *Target) Current(ctx context.Context) ([]engine.Record, error) {
	c, done, err := t.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	paging := ldap.NewControlPaging(1000)
	req := ldap.NewSearchRequest(t.s.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false,
		"(&(description="+ldap.EscapeFilter(t.marker)+")(|(objectClass=posixAccount)(objectClass=posixGroup)))",
		[]string{"objectClass", "uid", "cn", "uidNumber", "gidNumber", "homeDirectory", "loginShell", "memberUid"}, []ldap.Control{paging})
	var recs []engine.Record
	for {
		r := c.SearchAsync(ctx, req, 256)
		for r.Next() {
			if e := r.Entry(); e != nil {
				recs = appendRecords(recs, e)
			}
		}
		err := r.Err()
		if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return nil, nil // the base is made by the first apply
		}
		if err != nil {
			t.call("error")
			return nil, fmt.Errorf("search %s: %w", t.s.BaseDN, err)
		}
		next, _ := ldap.FindControl(r.Controls(), ldap.ControlTypePaging).(*ldap.ControlPaging)
		if next == nil || len(next.Cookie) == 0 {
			break
		}
		paging.SetCookie(next.Cookie)
	}
	t.call("ok")
	return recs, nil
}

// appendRecords appends an entry's records: a user, or a group and its
// memberships.
func appendRecords(recs []engine.Record, e *ldap.Entry) []engine.Record {
	classes := e.GetAttributeValues("objectClass")
	if slices.ContainsFunc(classes, func(c string) bool { return strings.EqualFold(c, "posixAccount") }) {
		uidNumber, _ := strconv.ParseUint(e.GetAttributeValue("uidNumber"), 10, 32)
		gidNumber, _ := strconv.ParseUint(e.GetAttributeValue("gidNumber"), 10, 32)
		return append(recs, engine.Record{Kind: KindUser, Key: e.GetAttributeValue("uid"), Value: userValue(uint32(uidNumber), uint32(gidNumber),
			e.GetAttributeValue("cn"), e.GetAttributeValue("homeDirectory"), e.GetAttributeValue("loginShell"))})
	}
	name := e.GetAttributeValue("cn")
	recs = append(recs, engine.Record{Kind: KindGroup, Key: name, Value: e.GetAttributeValue("gidNumber")})
	for _, m := range e.GetAttributeValues("memberUid") {
		recs = append(recs, engine.Record{Kind: KindMember, Key: name + " " + m})
	}
	return recs
}

// Apply implements engine.Target: memberships taken away first, then
// groups and users removed, then users and groups added or changed (a new
// group with its members in the one add), then memberships added. A
// group's memberships of a plan are one modify (one memberUid value for a
// single change), so the first publish costs an LDAP operation per entry,
// as ldapadd of the same entries does.
func (t *Target) Apply(ctx context.Context, p *engine.Plan) error {
	c, done, err := t.conn(ctx)
	if err != nil {
		return err
	}
	defer done()
	if err := t.ensureBase(c); err != nil {
		return err
	}
	fence := engine.FenceFrom(ctx)
	if fence != nil {
		if err := t.fence(c, fence); err != nil {
			return err
		}
	}
	added, removed := map[string][]string{}, map[string][]string{}
	newGroups := map[string]bool{}
	var entries []engine.Change
	for _, ch := range p.Changes {
		switch {
		case ch.Kind == KindMember:
			group, uid, _ := strings.Cut(ch.Key, " ")
			if ch.Op == engine.OpDelete {
				removed[group] = append(removed[group], uid)
			} else {
				added[group] = append(added[group], uid)
			}
		case ch.Kind == KindGroup && ch.Op == engine.OpAdd:
			newGroups[ch.Key] = true
			entries = append(entries, ch)
		default:
			entries = append(entries, ch)
		}
	}
	fail := func(err error) error { t.call("error"); return err }
	// Each phase's operations are independent: sent inFlight at a time on
	// the one connection, so the server works while the next is encoded.
	var ops []func() error
	for _, group := range sortedKeys(removed) {
		ops = append(ops, func() error { return t.members(c, group, removed[group], false) })
	}
	if err := parallel(ctx, fence, ops); err != nil {
		return fail(err)
	}
	// Deletions before additions: a renamed uid frees its number first.
	for _, deletes := range []bool{true, false} {
		ops = ops[:0]
		for _, ch := range entries {
			if (ch.Op == engine.OpDelete) != deletes {
				continue
			}
			var members []string
			if ch.Kind == KindGroup && ch.Op == engine.OpAdd {
				members = added[ch.Key]
			}
			ops = append(ops, func() error { return t.apply(c, ch, members) })
		}
		if err := parallel(ctx, fence, ops); err != nil {
			return fail(err)
		}
	}
	ops = ops[:0]
	for _, group := range sortedKeys(added) {
		if !newGroups[group] { // else added with the group
			ops = append(ops, func() error { return t.members(c, group, added[group], true) })
		}
	}
	if err := parallel(ctx, fence, ops); err != nil {
		return fail(err)
	}
	t.call("ok")
	return nil
}

// members adds or deletes memberUid values of a group, in one modify.
func (t *Target) members(c *ldap.Conn, group string, uids []string, add bool) error {
	m := ldap.NewModifyRequest(t.groupDN(group), nil)
	if add {
		m.Add("memberUid", uids)
	} else {
		m.Delete("memberUid", uids)
	}
	what := "delete memberUid " + strings.Join(uids, " ")
	if add {
		what = "add memberUid " + strings.Join(uids, " ")
	}
	return wrap(c.Modify(m), m.DN, what)
}

// inFlight is how many operations are sent before the first answer.
const inFlight = 8

// parallel runs ops, inFlight at a time; the first error stops the
// ones not yet started and is returned (with the others that failed).
// Under a fence, no op starts once the lease is not held.
func parallel(ctx context.Context, fence engine.Fence, ops []func() error) error {
	sem := make(chan struct{}, inFlight)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, op := range ops {
		mu.Lock()
		failed := len(errs) > 0
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		if fence != nil {
			if _, err := fence.Held(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				break
			}
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := op(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) == 0 {
		return ctx.Err()
	}
	return errors.Join(errs...)
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// apply makes one change to a user or group entry; a new group gets its
// members in its add.
func (t *Target) apply(c *ldap.Conn, ch engine.Change, members []string) error {
	switch ch.Kind {
	case KindGroup:
		dn := t.groupDN(ch.Key)
		switch ch.Op {
		case engine.OpDelete:
			return t.delete(c, dn)
		case engine.OpModify:
			m := ldap.NewModifyRequest(dn, nil)
			m.Replace("gidNumber", []string{ch.New})
			return wrap(c.Modify(m), dn, "gidNumber")
		default:
			a := ldap.NewAddRequest(dn, nil)
			a.Attribute("objectClass", []string{"top", "posixGroup"})
			a.Attribute("cn", []string{ch.Key})
			a.Attribute("gidNumber", []string{ch.New})
			if len(members) > 0 {
				a.Attribute("memberUid", members)
			}
			a.Attribute("description", []string{t.marker})
			return t.add(c, a)
		}
	default:
		dn := t.userDN(ch.Key)
		if ch.Op == engine.OpDelete {
			return t.delete(c, dn)
		}
		f := strings.SplitN(ch.New, "\t", 5)
		if len(f) != 5 {
			return fmt.Errorf("user %s: malformed record %q", ch.Key, ch.New)
		}
		if ch.Op == engine.OpModify {
			m := ldap.NewModifyRequest(dn, nil)
			m.Replace("uidNumber", []string{f[0]})
			m.Replace("gidNumber", []string{f[1]})
			m.Replace("homeDirectory", []string{f[2]})
			m.Replace("loginShell", []string{f[3]})
			m.Replace("cn", []string{f[4]})
			return wrap(c.Modify(m), dn, "account")
		}
		a := ldap.NewAddRequest(dn, nil)
		a.Attribute("objectClass", []string{"top", "account", "posixAccount"})
		a.Attribute("uid", []string{ch.Key})
		a.Attribute("cn", []string{f[4]})
		a.Attribute("uidNumber", []string{f[0]})
		a.Attribute("gidNumber", []string{f[1]})
		a.Attribute("homeDirectory", []string{f[2]})
		if f[3] != "" {
			a.Attribute("loginShell", []string{f[3]})
		}
		a.Attribute("description", []string{t.marker})
		return t.add(c, a)
	}
}

// add adds an entry; one already there is an error naming it, never
// overwritten (it is not collabsync's, or a run before this one made it
// and the next run reads it).
func (t *Target) add(c *ldap.Conn, a *ldap.AddRequest) error {
	err := c.Add(a)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultEntryAlreadyExists) {
		return fmt.Errorf("%s exists and is not collabsync's (no description %q): it is left alone; remove or rename it", a.DN, t.marker)
	}
	return wrap(err, a.DN, "add")
}

// delete removes an entry that carries the marker; a compare first, so a
// marker taken away by hand keeps it.
func (t *Target) delete(c *ldap.Conn, dn string) error {
	ok, err := c.Compare(dn, "description", t.marker)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return nil
	}
	if err != nil {
		return wrap(err, dn, "compare description")
	}
	if !ok {
		return fmt.Errorf("%s no longer carries description %q: it is left alone", dn, t.marker)
	}
	return wrap(c.Del(ldap.NewDelRequest(dn, nil)), dn, "delete")
}

// fence writes the lease's generation on the base entry, unless a newer
// generation is there already: a former leader that lost its lease
// (paused past it, or cut off) writes nothing once the new leader has
// applied. The base entry gets objectClass csFenced (collabsync's
// schema, configs/ldap) the first time.
func (t *Target) fence(c *ldap.Conn, f engine.Fence) error {
	gen, err := f.Held()
	if err != nil {
		return err
	}
	g := strconv.FormatUint(gen, 10)
	assert, err := ldapconn.NewAssertion("(|(!(csLeaseGeneration=*))(csLeaseGeneration<=" + g + "))")
	if err != nil {
		return err
	}
	m := ldap.NewModifyRequest(t.s.BaseDN, []ldap.Control{assert})
	m.Replace("csLeaseGeneration", []string{g})
	err = c.Modify(m)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultObjectClassViolation) {
		m = ldap.NewModifyRequest(t.s.BaseDN, []ldap.Control{assert})
		m.Add("objectClass", []string{"csFenced"})
		m.Replace("csLeaseGeneration", []string{g})
		err = c.Modify(m)
	}
	switch {
	case ldapconn.AssertionFailed(err):
		return fmt.Errorf("%s: a newer lease generation than this process's (%d) has written here: this process lost the HA lease; nothing written", t.s.BaseDN, gen)
	case ldap.IsErrorWithCode(err, ldap.LDAPResultUndefinedAttributeType), ldap.IsErrorWithCode(err, ldap.LDAPResultObjectClassViolation):
		return wrap(err, t.s.BaseDN, "fence (the server needs collabsync's schema, configs/ldap/collabsync.ldif, for an HA pair)")
	}
	return wrap(err, t.s.BaseDN, "fence")
}

// ensureBase creates the base and its two branches when missing.
func (t *Target) ensureBase(c *ldap.Conn) error {
	for _, dn := range []string{t.s.BaseDN, t.peopleDN(), t.groupsDN()} {
		_, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, false, "(objectClass=*)", []string{"1.1"}, nil))
		if err == nil {
			continue
		}
		if !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return wrap(err, dn, "read")
		}
		parsed, err := ldap.ParseDN(dn)
		if err != nil {
			return err
		}
		rdn := parsed.RDNs[0].Attributes[0]
		a := ldap.NewAddRequest(dn, nil)
		switch strings.ToLower(rdn.Type) {
		case "ou":
			a.Attribute("objectClass", []string{"top", "organizationalUnit"})
		case "cn":
			a.Attribute("objectClass", []string{"top", "organizationalRole"})
		default:
			return fmt.Errorf("%s does not exist and collabsync makes only ou= or cn= entries: create it", dn)
		}
		a.Attribute(rdn.Type, []string{rdn.Value})
		if err := c.Add(a); err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultEntryAlreadyExists) {
			return wrap(err, dn, "create")
		}
	}
	return nil
}

func wrap(err error, dn, what string) error {
	if err == nil {
		return nil
	}
	var le *ldap.Error
	if errors.As(err, &le) {
		return fmt.Errorf("%s: %s: %s (%w)", dn, what, ldap.LDAPResultCodeMap[le.ResultCode], err)
	}
	return fmt.Errorf("%s: %s: %w", dn, what, err)
}
