package ldapx

import (
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/directory"
)

func testLDAPConfig() Config {
	c := Config{
		Users: UserMapping{
			Attributes:   UserAttributes{UID: "uid", UIDNumber: "uidNumber", GIDNumber: "gidNumber", Name: "cn", Mail: "mail", Home: "homeDirectory", Shell: "loginShell"},
			DefaultShell: "/bin/bash", DefaultHome: "/home/{uid}",
		},
		Collaborations: CollaborationMapping{
			Membership: MembershipUID,
			Attributes: CollaborationAttributes{Name: "cn", GIDNumber: "gidNumber", Members: "memberUid"},
		},
	}
	return c
}

func TestMapUser(t *testing.T) {
	base := map[string][]string{"uid": {"alice"}, "uidNumber": {"10001"}, "gidNumber": {"20001"}, "cn": {"Alice"}}
	with := func(k string, v ...string) map[string][]string {
		m := map[string][]string{}
		for a, vs := range base {
			m[a] = vs
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name  string
		dn    string
		attrs map[string][]string
		want  directory.User
		err   string
	}{
		{name: "defaults for home and shell", attrs: base,
			want: directory.User{UID: "alice", UIDNumber: 10001, GIDNumber: 20001, Name: "Alice", Home: "/home/alice", Shell: "/bin/bash"}},
		{name: "missing uidNumber", attrs: with("uidNumber"), err: "missing uidNumber"},
		{name: "non-numeric gidNumber", attrs: with("gidNumber", "x1"), err: `gidNumber "x1" is not a number`},
		{name: "negative uidNumber", attrs: with("uidNumber", "-5"), err: "not a number"},
		{name: "uidNumber 0 is root", attrs: with("uidNumber", "0"), err: "uidNumber 0 is reserved"},
		{name: "uidNumber too big", attrs: with("uidNumber", "4294967296"), err: "not a number"},
		{name: "two uidNumbers", attrs: with("uidNumber", "1", "2"), err: "uidNumber has 2 values"},
		{name: "bad user name", attrs: with("uid", "al ice"), err: "not a valid user name"},
		{name: "numeric user name", attrs: with("uid", "123"), err: "not a valid user name"},
		{name: "missing uid", attrs: with("uid"), err: "missing uid"},
		{name: "several uids, RDN wins", dn: "uid=alice,ou=people,dc=example,dc=org", attrs: with("uid", "amartin", "alice"),
			want: directory.User{UID: "alice", UIDNumber: 10001, GIDNumber: 20001, Name: "Alice", Home: "/home/alice", Shell: "/bin/bash"}},
		{name: "several uids, none the RDN", dn: "cn=Alice,ou=people,dc=example,dc=org", attrs: with("uid", "a", "b"), err: "uid has 2 values and none is the RDN"},
		{name: "home with colon", attrs: with("homeDirectory", "/home/a:b"), err: "not an absolute path"},
		{name: "relative shell", attrs: with("loginShell", "bash"), err: "not an absolute path"},
		{name: "two mails", attrs: with("mail", "a@x", "b@x"), err: "mail has 2 values"},
	}
	m := NewMapper(testLDAPConfig())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dn := tt.dn
			if dn == "" {
				dn = "uid=alice,ou=people,dc=example,dc=org"
			}
			u, err := m.User(ldap.NewEntry(dn, tt.attrs))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.want.DN = dn
			if !reflect.DeepEqual(u.User, tt.want) {
				t.Errorf("got %+v\nwant %+v", u, tt.want)
			}
		})
	}
}

func TestMembers(t *testing.T) {
	known := map[string]bool{"alice": true, "bob": true}
	uids, unknown := Members([]string{"bob", "ghost", "alice", "bob"}, func(v string) (string, bool) { return v, known[v] })
	if strings.Join(uids, ",") != "alice,bob" || strings.Join(unknown, ",") != "ghost" {
		t.Errorf("uids %v unknown %v", uids, unknown)
	}
}

func TestEscaping(t *testing.T) {
	if got := equalityFilter("uid", "a*)(uid=*"); got != `(uid=a\2a\29\28uid=\2a)` {
		t.Errorf("equalityFilter = %s", got)
	}
	if _, err := ldap.CompileFilter(equalityFilter("cn", `\*()`+"\x00")); err != nil {
		t.Errorf("escaped filter does not compile: %v", err)
	}
	if got := childDN("cn", "a,b+c=d", "ou=roles,dc=x"); got != `cn=a\,b\+c=d,ou=roles,dc=x` {
		t.Errorf("childDN = %s", got)
	}
	if got := andFilter(); got != "(objectClass=*)" {
		t.Errorf("andFilter() = %s", got)
	}
	if got := andFilter("(a=1)", "(b=2)"); got != "(&(a=1)(b=2))" {
		t.Errorf("andFilter = %s", got)
	}
}

func TestNormalizeDN(t *testing.T) {
	same := [][2]string{
		{"uid=Alice,ou=People,dc=Example,dc=org", "UID=alice, OU=people, DC=example, DC=org"},
		{`cn=a\,b,dc=x`, `cn=a\2cb,dc=x`},
		{"cn=a+uid=b,dc=x", "uid=b+cn=a,dc=x"},
	}
	for _, p := range same {
		if a, b := normalizeDN(p[0]), normalizeDN(p[1]); a != b || a == "" {
			t.Errorf("%q → %q, %q → %q: want equal", p[0], a, p[1], b)
		}
	}
	if normalizeDN("not a dn") != "" {
		t.Error("invalid DN normalized to non-empty")
	}
}

// FuzzMapUser: arbitrary attribute values never panic the mapper, and an
// accepted user is safe to write into a passwd line.
// namePattern is what validName checks, as a regular expression.
var namePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,31}$`)

// TestValidName: validName against namePattern at its edges.
func TestValidName(t *testing.T) {
	for _, s := range []string{"", "a", "_", "1", "12345", "-a", ".a", "a-b.c_d9", "A", "Z_", "z", "a b", "a:b", "é", "a\x00",
		strings.Repeat("a", 32), strings.Repeat("a", 33), "a" + strings.Repeat("9", 31), "@", "[", "`", "{", "/", "0a"} {
		if got, want := validName(s), namePattern.MatchString(s); got != want {
			t.Errorf("validName(%q) = %v, want %v", s, got, want)
		}
	}
}

func FuzzMapUser(f *testing.F) {
	f.Add("uid=alice,dc=x", "alice", "10001", "20001", "Alice", "/home/alice", "/bin/bash")
	f.Add("cn=\\,,dc=x", "a b", "-1", "", "x:y", "rel", "")
	m := NewMapper(testLDAPConfig())
	f.Fuzz(func(t *testing.T, dn, uid, uidn, gidn, cn, home, shell string) {
		if got, want := validName(uid), namePattern.MatchString(uid); got != want {
			t.Errorf("validName(%q) = %v, the pattern says %v", uid, got, want)
		}
		e := ldap.NewEntry(dn, map[string][]string{"uid": {uid}, "uidNumber": {uidn}, "gidNumber": {gidn}, "cn": {cn}, "homeDirectory": {home}, "loginShell": {shell}})
		u, err := m.User(e)
		if err != nil {
			return
		}
		for _, s := range []string{u.UID, u.Home, u.Shell} {
			if strings.ContainsAny(s, ":\n") {
				t.Errorf("accepted field %q would break passwd", s)
			}
		}
		if u.UIDNumber == 0 || u.GIDNumber == 0 {
			t.Errorf("accepted id 0: %+v", u)
		}
	})
}

func TestParseDate(t *testing.T) {
	for in, want := range map[string]string{
		"20261231000000Z":     "2026-12-31T00:00:00Z",
		"20261231120000+0100": "2026-12-31T11:00:00Z",
		"2026-12-31":          "2026-12-31T23:59:59Z",
		"20261231000000.5Z":   "2026-12-31T00:00:00.5Z",
	} {
		got, err := parseDate(in)
		if err != nil || got.Format(time.RFC3339Nano) != want {
			t.Errorf("%s: %v %v, want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "2026-13-01", "31/12/2026", "tomorrow"} {
		if _, err := parseDate(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzParseDate: no review date string makes the parser panic, and an
// accepted one is in UTC.
func FuzzParseDate(f *testing.F) {
	for _, s := range []string{"20261231000000Z", "2026-12-31", "20261231120000+0100", "2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, err := parseDate(s); err == nil && d.Location() != time.UTC {
			t.Errorf("%q parsed to non-UTC %v", s, d)
		}
	})
}

// TestParseExpiry: each format's "never", a past and a future expiry, and
// what is not one.
func TestParseExpiry(t *testing.T) {
	at := time.Date(2027, 1, 15, 0, 0, 0, 0, time.UTC).Unix()
	for _, c := range []struct {
		format, v string
		want      int64
		err       bool
	}{
		{ExpiresFileTime, "", 0, false},
		{ExpiresFileTime, "0", 0, false},
		{ExpiresFileTime, "9223372036854775807", 0, false},
		{ExpiresFileTime, "134444448000000000", at, false}, // 2027-01-15
		{ExpiresFileTime, "116444736000000000", -1, false}, // the epoch itself: not "never"
		{ExpiresFileTime, "-5", 0, true},
		{ExpiresFileTime, "soon", 0, true},
		{ExpiresDays, "-1", 0, false},
		{ExpiresDays, "0", -1, false}, // as pam_unix: expired on 1970-01-01
		{ExpiresDays, "20833", at, false},
		{ExpiresDays, "-2", 0, true},
		{ExpiresGeneralizedTime, "20270115000000Z", at, false},
		{ExpiresGeneralizedTime, "2027-01-15", at + 86399, false}, // a date: to its end, as reviewed_until
		{ExpiresGeneralizedTime, "next year", 0, true},
	} {
		got, err := parseExpiry(c.v, c.format)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("%s %q: %d, %v; want %d (error %v)", c.format, c.v, got, err, c.want, c.err)
		}
	}
}

// TestDisabledUsersSuspended: a user whose entry the disabled users'
// search also returned is suspended in the snapshot; its entry is not
// modified (the live model's users are shared).
func TestDisabledUsersSuspended(t *testing.T) {
	em := newEntryMapper(testLDAPConfig())
	user := func(uid string) *Mapped {
		return em.mapEntry(StreamUsers, ldap.NewEntry("uid="+uid+",ou=people,dc=example,dc=org", map[string][]string{
			"uid": {uid}, "uidNumber": {"1001"}, "gidNumber": {"100"}}))
	}
	alice, bob := user("alice"), user("bob")
	entries := Entries{
		StreamUsers:    {"k1": alice, "k2": bob},
		StreamDisabled: {"k2": em.mapEntry(StreamDisabled, ldap.NewEntry(bob.DN, nil))},
	}
	snap := Resolve(entries)
	got := map[string]bool{}
	for _, u := range snap.Users {
		got[u.UID] = u.Suspended
	}
	if !reflect.DeepEqual(got, map[string]bool{"alice": false, "bob": true}) {
		t.Errorf("suspended: %v", got)
	}
	if bob.User.Suspended {
		t.Error("the entry itself was modified")
	}
}

// TestListValues: a collaboration's list may be a local part or an
// address (the documented local@domain form); a value that is neither is
// left out and named, the collaboration kept (before: the address form
// dropped the whole collaboration from every target).
func TestListValues(t *testing.T) {
	cfg := testLDAPConfig()
	cfg.Collaborations.Attributes.Lists = "csListName"
	em := newEntryMapper(cfg)
	entries := Entries{StreamUsers: {}, StreamCollaborations: {
		"atlas": em.mapEntry(StreamCollaborations, ldap.NewEntry("cn=atlas,ou=groups", map[string][]string{
			"cn": {"atlas"}, "gidNumber": {"2000"}, "csListName": {"atlas-users", "atlas-news@lists.example.org", "bad list", "-x"}})),
	}}
	snap := Resolve(entries)
	if len(snap.Collaborations) != 1 || !reflect.DeepEqual(snap.Collaborations[0].Lists, []string{"atlas-users", "atlas-news@lists.example.org"}) {
		t.Fatalf("collaborations: %+v", snap.Collaborations)
	}
	var got []string
	for _, p := range snap.Problems {
		got = append(got, p.String())
	}
	want := []string{`cn=atlas,ou=groups: csListName "-x" is not a list name (a local part, or local@domain); left out`,
		`cn=atlas,ou=groups: csListName "bad list" is not a list name (a local part, or local@domain); left out`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s", strings.Join(got, "\n"))
	}
}

func TestAllocations(t *testing.T) {
	cfg := testLDAPConfig()
	cfg.Collaborations.Attributes.Allocation, cfg.Collaborations.Attributes.GPUAllocation = "csAllocation", "csGPUAllocation"
	m := NewMapper(cfg)
	for _, tt := range []struct {
		name      string
		core, gpu []string
		want      directory.Allocation
		err       string
	}{
		{"none", nil, nil, directory.Allocation{}, ""},
		{"core only", []string{"500000"}, nil, directory.Allocation{CoreHours: 500000}, ""},
		{"both", []string{"1200"}, []string{"30"}, directory.Allocation{CoreHours: 1200, GPUHours: 30}, ""},
		{"zero", []string{"0"}, nil, directory.Allocation{}, ""},
		{"negative", []string{"-5"}, nil, directory.Allocation{}, `csAllocation "-5" is not a whole, non-negative number of hours`},
		{"a fraction", nil, []string{"1.5"}, directory.Allocation{}, `csGPUAllocation "1.5" is not a whole`},
		{"two values", []string{"1", "2"}, nil, directory.Allocation{}, "csAllocation"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			attrs := map[string][]string{"cn": {"atlas"}, "gidNumber": {"2000"}}
			if tt.core != nil {
				attrs["csAllocation"] = tt.core
			}
			if tt.gpu != nil {
				attrs["csGPUAllocation"] = tt.gpu
			}
			c, err := m.Collaboration(ldap.NewEntry("cn=atlas,ou=groups", attrs))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || c.Allocation != tt.want {
				t.Fatalf("allocation %+v, err %v; want %+v", c.Allocation, err, tt.want)
			}
		})
	}
	if attrs := m.CollaborationAttributes(); !slices.Contains(attrs, "csAllocation") || !slices.Contains(attrs, "csGPUAllocation") {
		t.Errorf("the allocations are not asked for: %v", attrs)
	}
}
