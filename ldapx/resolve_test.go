package ldapx

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/store"
)

// TestModelSnapshotIsResolve: the live model reuses the users' share and
// each collaboration resolved before while nothing it depends on changed.
// Through random changes of users, collaborations (members and contacts by
// attribute) and role groups, every snapshot it gives equals resolving its
// entries from scratch.
func TestModelSnapshotIsResolve(t *testing.T) {
	for _, membership := range []string{"member_dn", "member_uid"} {
		t.Run(membership, func(t *testing.T) { testModelSnapshotIsResolve(t, membership) })
	}
}

// refreshingModel is a model of a directory at ldap://127.0.0.1 with
// users under ou=people,dc=x and the collaborations section given, every
// stream in its first refresh.
func refreshingModel(t *testing.T, collaborations string) *Model {
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("x"), 0o600)
	cfg := parseSection(t, `ldap:
  uris: ["ldap://127.0.0.1"]
  bind: {dn: "cn=x", password_file: "`+pw+`"}
  users: {base_dn: "ou=people,dc=x"}
  collaborations:`+collaborations+`
state_dir: /tmp
`)
	m := NewModel(cfg, func() {})
	for _, s := range m.streams {
		m.beginRefresh(s, false)
	}
	return m
}

func testModelSnapshotIsResolve(t *testing.T, membership string) {
	m := refreshingModel(t, `
    base_dn: "ou=groups,dc=x"
    membership: `+membership+`
    contacts:
      attributes: {computing: computingContact}
      groups: {base_dn: "ou=roles,dc=x"}`)
	rnd := rand.New(rand.NewPCG(3, 4))
	userDN := func(i int) string { return fmt.Sprintf("uid=u%d,ou=people,dc=x", i) }
	member := userDN
	if membership == "member_uid" {
		member = func(i int) string { return fmt.Sprintf("u%d", i) }
	}
	someUsers := func() []string {
		var out []string
		for range rnd.IntN(4) {
			out = append(out, userDN(rnd.IntN(30))) // some dangle
		}
		return out
	}
	// Members: sometimes many (a search of the users by galloping),
	// sometimes sorted and all known (taken as they are).
	someMembers := func() []string {
		var out []string
		for range rnd.IntN(12) {
			out = append(out, member(rnd.IntN(30)))
		}
		if rnd.IntN(2) == 0 {
			slices.Sort(out)
			out = slices.Compact(out)
		}
		return out
	}
	step := func() {
		switch k := rnd.IntN(3); {
		case k == 0:
			i := rnd.IntN(25)
			if rnd.IntN(5) == 0 {
				m.remove(StreamUsers, fmt.Sprint(i))
				return
			}
			m.put(StreamUsers, fmt.Sprint(i), ldap.NewEntry(userDN(i), map[string][]string{"uid": {fmt.Sprintf("u%d", i)},
				"uidNumber": {fmt.Sprint(1000 + i)}, "gidNumber": {"100"}, "loginShell": {fmt.Sprintf("/bin/sh%d", rnd.IntN(3))}}))
		case k == 1:
			j := rnd.IntN(6)
			if rnd.IntN(6) == 0 {
				m.remove(StreamCollaborations, fmt.Sprint(j))
				return
			}
			m.put(StreamCollaborations, fmt.Sprint(j), ldap.NewEntry(fmt.Sprintf("cn=g%d,ou=groups,dc=x", j), map[string][]string{
				"cn": {fmt.Sprintf("g%d", j%5)}, "gidNumber": {fmt.Sprint(2000 + j)}, "member": someMembers(), "memberUid": someMembers(),
				"computingContact": someUsers()}))
		default:
			r := rnd.IntN(8)
			if rnd.IntN(4) == 0 {
				m.remove(StreamRoleGroups, fmt.Sprint(r))
				return
			}
			role := []string{"collaboration", "storage"}[r%2]
			m.put(StreamRoleGroups, fmt.Sprint(r), ldap.NewEntry(fmt.Sprintf("cn=g%d-%s,ou=roles,dc=x", r%6, role), map[string][]string{
				"cn": {fmt.Sprintf("g%d-%s", r%6, role)}, "member": someUsers()}))
		}
	}
	for range 30 {
		step()
	}
	for _, s := range m.streams {
		if err := m.endRefresh(s); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 2000; i++ {
		step()
		got, ok := m.Snapshot()
		if !ok {
			t.Fatal("not live")
		}
		if want := Resolve(m.entries); !reflect.DeepEqual(got, want) {
			t.Fatalf("step %d: the model's snapshot differs from resolving its entries:\n got %+v\nwant %+v", i, got, want)
		}
		checkUIDKeys(t, got)
		if n, max := len(m.collabs.m), len(m.entries[StreamCollaborations]); n > max {
			t.Fatalf("step %d: %d collaborations cached of %d entries", i, n, max)
		}
	}
}

// TestJournalFollowsTheConfiguration: a saved model is restored only
// under the same searches and mappings; another filter discards it and
// its cookies (the entries were chosen and mapped by the old one).
func TestJournalFollowsTheConfiguration(t *testing.T) {
	ctx := context.Background()
	parse := func(filter string) Config { return minimalSection(t, filter, "") }
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := NewModel(parse("(objectClass=posixAccount)"), func() {})
	if _, err := a.Load(ctx, st); err != nil {
		t.Fatal(err)
	}
	a.put(StreamUsers, "k1", ldap.NewEntry("uid=u1,ou=people,dc=x", map[string][]string{"uid": {"u1"}, "uidNumber": {"1001"}, "gidNumber": {"100"}}))
	a.saveCookie(StreamUsers, []byte("cookie-1"))
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	same := NewModel(parse("(objectClass=posixAccount)"), func() {})
	if n, err := same.Load(ctx, st); n != 1 || err != nil || string(same.cookie(StreamUsers)) != "cookie-1" {
		t.Fatalf("same configuration: restored %d, err %v, cookie %q", n, err, same.cookie(StreamUsers))
	}
	other := NewModel(parse("(uid=u*)"), func() {})
	if n, err := other.Load(ctx, st); n != 0 || err != nil || other.cookie(StreamUsers) != nil {
		t.Fatalf("another filter: restored %d, err %v, cookie %q", n, err, other.cookie(StreamUsers))
	}
	again := NewModel(parse("(objectClass=posixAccount)"), func() {})
	if n, _ := again.Load(ctx, st); n != 0 {
		t.Errorf("the discarded model came back: %d entries", n)
	}
}

// TestUnusableAddresses: a mail or a production account's manager that is
// no plain address (a |command, a second value after a comma) is dropped
// with a problem naming the DN, and the entry is still used.
func TestUnusableAddresses(t *testing.T) {
	cfg := minimalSection(t, "", `  production_accounts: {base_dn: "ou=prod,dc=x", attributes: {managers: mail}}
`)
	em := newEntryMapper(cfg)
	entries := Entries{StreamUsers: {}, StreamCollaborations: {}, StreamProduction: {}}
	for i, mail := range []string{"alice@example.org", "a@b, |/bin/sh"} {
		dn := fmt.Sprintf("uid=u%d,ou=people,dc=x", i)
		entries[StreamUsers][dn] = em.mapEntry(StreamUsers, ldap.NewEntry(dn, map[string][]string{
			"uid": {fmt.Sprintf("u%d", i)}, "uidNumber": {fmt.Sprint(1000 + i)}, "gidNumber": {"100"}, "mail": {mail}}))
	}
	pdn := "uid=atlas-prod,ou=prod,dc=x"
	entries[StreamProduction][pdn] = em.mapEntry(StreamProduction, ldap.NewEntry(pdn, map[string][]string{
		"uid": {"atlas-prod"}, "uidNumber": {"3000"}, "gidNumber": {"100"}, "mail": {"boss@example.org", "|/bin/sh -c id"}}))
	snap := Resolve(entries)
	if len(snap.Users) != 2 || snap.Users[0].Mail != "alice@example.org" || snap.Users[1].Mail != "" {
		t.Errorf("users: %+v", snap.Users)
	}
	if len(snap.ProductionAccounts) != 1 || !reflect.DeepEqual(snap.ProductionAccounts[0].Managers, []string{"boss@example.org"}) {
		t.Errorf("production accounts: %+v", snap.ProductionAccounts)
	}
	want := map[string]bool{"uid=u1,ou=people,dc=x": true, pdn: true}
	for _, p := range snap.Problems {
		if !want[p.DN] || !p.Reference {
			t.Errorf("unexpected problem %+v", p)
		}
		delete(want, p.DN)
	}
	if len(want) > 0 {
		t.Errorf("no problem for %v: %+v", want, snap.Problems)
	}
}

// TestResolveValidators: a validator named by DN or uid resolves to the
// uid; one that is no user leaves the account unvalidated with a problem;
// the model's entries keep the values as read.
func TestResolveValidators(t *testing.T) {
	cfg := testLDAPConfig()
	cfg.Users.Attributes.ValidatedBy = "validatedBy"
	em := newEntryMapper(cfg)
	user := func(uid, validator string) *Mapped {
		attrs := map[string][]string{"uid": {uid}, "uidNumber": {"1000"}, "gidNumber": {"1000"}, "cn": {uid}}
		if validator != "" {
			attrs["validatedBy"] = []string{validator}
		}
		return em.mapEntry(StreamUsers, ldap.NewEntry("uid="+uid+",ou=people,dc=x", attrs))
	}
	users := map[string]*Mapped{
		"1": user("alice", ""), "2": user("bob", ""),
		"3": user("ext1", "uid=alice,ou=people,dc=x"), "4": user("ext2", "bob"),
		"5": user("ext3", "zed"), "6": user("ext4", "uid=zed,ou=people,dc=x"),
	}
	snap := Resolve(Entries{StreamUsers: users})
	got := map[string]string{}
	for _, u := range snap.Users {
		got[u.UID] = u.ValidatedBy
	}
	want := map[string]string{"alice": "", "bob": "", "ext1": "alice", "ext2": "bob", "ext3": "", "ext4": ""}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("validators %v, want %v", got, want)
	}
	checkUIDKeys(t, snap)
	if len(snap.Problems) != 2 {
		t.Errorf("problems: %v", snap.Problems)
	}
	if users["3"].User.ValidatedBy != "uid=alice,ou=people,dc=x" || users["5"].User.ValidatedBy != "zed" {
		t.Error("resolving changed the model's entries")
	}
}

// TestNestedGroups: a member that is another collaboration's group counts
// with its members through any depth when nested is expand (a cycle is
// named and each group counted once), and is named and left out when it
// is report; a DN that is neither a user nor a group is named as such.
func TestNestedGroups(t *testing.T) {
	for _, mode := range []string{NestedExpand, NestedReport} {
		t.Run(mode, func(t *testing.T) {
			cfg := testLDAPConfig()
			cfg.Collaborations.Membership, cfg.Collaborations.Attributes.Members = MembershipDN, "member"
			cfg.Collaborations.Nested = mode
			em := newEntryMapper(cfg)
			dn := func(kind, name string) string { return kind + "=" + name + ",dc=example,dc=org" }
			entries := Entries{StreamUsers: {}, StreamCollaborations: {}}
			for i, uid := range []string{"alice", "bob", "carol", "dave"} {
				entries[StreamUsers][uid] = em.mapEntry(StreamUsers, ldap.NewEntry(dn("uid", uid), map[string][]string{
					"uid": {uid}, "uidNumber": {fmt.Sprint(1000 + i)}, "gidNumber": {"100"}}))
			}
			group := func(name string, gid int, members ...string) {
				entries[StreamCollaborations][name] = em.mapEntry(StreamCollaborations, ldap.NewEntry(dn("cn", name), map[string][]string{
					"cn": {name}, "gidNumber": {fmt.Sprint(gid)}, "member": members}))
			}
			group("atlas", 2000, dn("uid", "alice"), dn("cn", "students"), dn("cn", "ghost"))
			group("students", 2001, dn("uid", "bob"), dn("cn", "interns"))
			group("interns", 2002, dn("uid", "carol"), dn("CN", "Atlas")) // back to atlas: a cycle
			snap := Resolve(entries)
			members := map[string][]string{}
			for _, c := range snap.Collaborations {
				members[c.Name] = c.Members
			}
			var problems []string
			for _, p := range snap.Problems {
				problems = append(problems, p.String())
			}
			all := strings.Join(problems, "\n")
			want := map[string][]string{"atlas": {"alice", "bob", "carol"}, "students": {"alice", "bob", "carol"}, "interns": {"alice", "bob", "carol"}}
			if mode == NestedReport {
				want = map[string][]string{"atlas": {"alice"}, "students": {"bob"}, "interns": {"carol"}}
				if !strings.Contains(all, `cn=atlas,dc=example,dc=org: member "cn=students,dc=example,dc=org" is the group of collaboration students: nested groups are not expanded`) {
					t.Errorf("report mode does not name the nested group:\n%s", all)
				}
			} else if !strings.Contains(all, "cn=atlas,dc=example,dc=org: nested groups form a cycle (atlas → students → interns → atlas)") {
				t.Errorf("the cycle is not named:\n%s", all)
			}
			if !reflect.DeepEqual(members, want) {
				t.Errorf("members: %v, want %v", members, want)
			}
			if !strings.Contains(all, `member "cn=ghost,dc=example,dc=org" is not a known user or group; left out`) {
				t.Errorf("an unknown DN:\n%s", all)
			}
		})
	}
}

// TestAllKnownIsMembersAsIs: the galloping check takes a member list as
// it is exactly when Members would: known uids, strictly ascending (with
// duplicate uids among the users, DNs, unknown and empty values).
func TestAllKnownIsMembersAsIs(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	for round := range 2000 {
		n := rnd.IntN(60)
		entries := map[string]*Mapped{}
		for i := range n {
			uid := fmt.Sprintf("u%d", rnd.IntN(2*n+1))
			entries[fmt.Sprint(i)] = &Mapped{DN: "uid=" + uid + fmt.Sprint(i) + ",dc=x", User: &rawUser{User: directory.User{DN: "uid=" + uid + fmt.Sprint(i) + ",dc=x", UID: uid}}}
		}
		p := resolveUsers(entries, nil)
		var values []string
		for range rnd.IntN(20) {
			switch rnd.IntN(12) {
			case 0:
				values = append(values, "uid=u1,dc=x")
			case 1:
				values = append(values, "")
			default:
				values = append(values, fmt.Sprintf("u%d", rnd.IntN(2*n+2)))
			}
		}
		if rnd.IntN(3) != 0 {
			slices.Sort(values)
		}
		if rnd.IntN(2) == 0 {
			values = slices.Compact(values)
		}
		uids, unknown := Members(values, p.uidOf)
		asIs := len(unknown) == 0 && len(uids) == len(values) && (len(values) == 0 || &uids[0] == &values[0])
		if got := p.allKnown(values); got != asIs {
			t.Fatalf("round %d: users %v, values %v: allKnown %v, Members as they are %v", round, p.users, values, got, asIs)
		}
		if got, gotUnknown := p.members(values); !slices.Equal(got, uids) || !slices.Equal(gotUnknown, unknown) {
			t.Fatalf("round %d: values %v: members %v %v, Members %v %v", round, values, got, gotUnknown, uids, unknown)
		}
	}
}

// TestCollabCacheOrder: the collaborations come in DN order whether the
// last call's order is reused (same keys) or not (a key added, gone, or
// a DN out of order under its old key).
func TestCollabCacheOrder(t *testing.T) {
	entries := map[string]*Mapped{}
	for _, n := range []string{"c", "a", "d", "b"} {
		entries[n] = &Mapped{DN: "cn=" + n + ",ou=g"}
	}
	var c collabCache
	dns := func() string {
		var out []string
		for _, e := range c.inOrder(entries) {
			out = append(out, e.DN[3:4])
		}
		return strings.Join(out, "")
	}
	for _, step := range []struct {
		change func()
		want   string
	}{
		{func() {}, "abcd"},
		{func() {}, "abcd"}, // reused
		{func() { entries["b"] = &Mapped{DN: "cn=b,ou=g"} }, "abcd"},
		{func() { entries["e"] = &Mapped{DN: "cn=0,ou=g"} }, "0abcd"},
		{func() { delete(entries, "a") }, "0bcd"},
		{func() { entries["c"] = &Mapped{DN: "cn=z,ou=g"} }, "0bdz"},
	} {
		step.change()
		if got := dns(); got != step.want {
			t.Fatalf("order %q, want %q", got, step.want)
		}
	}
}

// TestResolveOnEveryCore: members looked up on every core (more than one
// run of collaborations) resolve as on one; under -race, without a race.
func TestResolveOnEveryCore(t *testing.T) {
	m := refreshingModel(t, ` {base_dn: "ou=groups,dc=x", membership: member_uid}`)
	rnd := rand.New(rand.NewPCG(5, 6))
	for i := range 3000 {
		m.put(StreamUsers, fmt.Sprint(i), ldap.NewEntry(fmt.Sprintf("uid=u%05d,ou=people,dc=x", i), map[string][]string{
			"uid": {fmt.Sprintf("u%05d", i)}, "uidNumber": {fmt.Sprint(1000 + i)}, "gidNumber": {"100"}}))
	}
	for j := range 2000 {
		var members []string
		for range 1 + rnd.IntN(80) {
			members = append(members, fmt.Sprintf("u%05d", rnd.IntN(3300))) // some unknown
		}
		if j%2 == 0 {
			slices.Sort(members)
			members = slices.Compact(members)
		}
		m.put(StreamCollaborations, fmt.Sprint(j), ldap.NewEntry(fmt.Sprintf("cn=g%d,ou=groups,dc=x", j), map[string][]string{
			"cn": {fmt.Sprintf("g%d", j)}, "gidNumber": {fmt.Sprint(20000 + j)}, "memberUid": members}))
	}
	prev := runtime.GOMAXPROCS(1)
	one := Resolve(m.entries)
	runtime.GOMAXPROCS(max(prev, 4))
	every := Resolve(m.entries)
	runtime.GOMAXPROCS(prev)
	if len(one.Collaborations) != 2000 || len(one.Problems) == 0 {
		t.Fatalf("%d collaborations, %d problems: not the directory meant", len(one.Collaborations), len(one.Problems))
	}
	if !reflect.DeepEqual(every, one) {
		t.Error("resolved on every core, the snapshot differs from one resolved on one")
	}
}

// checkUIDKeys requires a snapshot's uid keys, which the rules search its
// users by, to be those of its users in their order.
func checkUIDKeys(t *testing.T, snap *directory.Snapshot) {
	t.Helper()
	if want := directory.SortUsers(slices.Clone(snap.Users)); !snap.UIDKeys.Equal(want) {
		t.Fatalf("the snapshot's uid keys %x are not its users' %x", snap.UIDKeys, want)
	}
}

// TestResolveUsersInOrder: a full read's users resolved in the order
// they were read give the snapshot resolving the map gives, whatever
// that order; a list that is not the map's values once each (a DN read
// twice) goes by the map.
func TestResolveUsersInOrder(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 8))
	for round := range 300 {
		n := 1 + rnd.IntN(40)
		entries, disabled := map[string]*Mapped{}, map[string]*Mapped{}
		var read []*Mapped
		for i := range n {
			uid := fmt.Sprintf("u%d", rnd.IntN(2*n))
			dn := fmt.Sprintf("uid=%s,ou=P%d,dc=x", uid, i)
			m := &Mapped{DN: dn, NormDN: strings.ToLower(dn)}
			if rnd.IntN(8) == 0 {
				m.Problem = "uidNumber is missing"
			} else {
				u := directory.User{DN: dn, UID: uid, UIDNumber: uint32(1000 + i), Mail: uid + "@example.org"}
				switch rnd.IntN(6) {
				case 0:
					u.Mail = "not an address"
				case 1:
					u.ValidatedBy = fmt.Sprintf("u%d", rnd.IntN(2*n))
				case 2:
					u.ValidatedBy = fmt.Sprintf("uid=u%d,ou=P%d,dc=x", rnd.IntN(2*n), rnd.IntN(n))
				}
				m.User = &rawUser{User: u}
			}
			if rnd.IntN(5) == 0 {
				disabled[dn] = &Mapped{DN: dn}
			}
			entries[dn] = m
			read = append(read, m)
		}
		rnd.Shuffle(len(read), func(i, j int) { read[i], read[j] = read[j], read[i] })
		if round%5 == 0 {
			read = append(read, read[0]) // a DN read twice
		}
		all := Entries{StreamUsers: entries, StreamDisabled: disabled}
		want := Resolve(all)
		got := resolveWith(all, resolveUsersInOrder(entries, read, disabled), nil)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: in the order read:\n%+v\nby the map:\n%+v", round, got, want)
		}
	}
}
