package ldapx

import (
	"bytes"
	"context"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// TestMapTransientKeepsNothingOfTheEntry: a user or disabled user mapped
// from a transient entry (the receive buffer, the reader's scratch) is
// the mapping of an entry of its own, and stays so once the buffer and
// the scratch are used for the next entry.
func TestMapTransientKeepsNothingOfTheEntry(t *testing.T) {
	cfg := testLDAPConfig()
	cfg.Users.Attributes.Status = "accountStatus"
	cfg.Users.SuspendedValues = []string{"locked"}
	cfg.Users.Attributes.Affiliation = "affiliation"
	cfg.Users.Attributes.ValidatedBy = "validatedBy" // and NormDN
	cfg.Users.Attributes.OptOuts = "optOut"
	cfg.Users.Attributes.Expires = "accountExpires"
	cfg.Users.Attributes.PrivateGroup = "privateGroup"
	em := newEntryMapper(cfg)
	full := [][]string{{"uid", "alice"}, {"uidNumber", "10001"}, {"gidNumber", "20001"}, {"cn", "Alice A."},
		{"mail", "alice@example.org"}, {"homeDirectory", "/home/alice"}, {"loginShell", "/bin/zsh"},
		{"accountStatus", "locked"}, {"affiliation", "member"}, {"validatedBy", "uid=bob,ou=people,dc=example,dc=org"},
		{"optOut", "news", "announce", "social"}, {"accountExpires", "20300101000000Z"},
		{"privateGroup", "cn=alice,ou=groups,dc=example,dc=org"}}
	tests := []struct {
		name   string
		stream StreamName
		dn     string
		attrs  [][]string
	}{
		{"every attribute", StreamUsers, "uid=alice,ou=People,dc=example,dc=org", full},
		{"a private group by name", StreamUsers, "uid=carol,ou=people,dc=example,dc=org", [][]string{{"uid", "carol"}, {"uidNumber", "10003"}, {"gidNumber", "20003"}, {"optOut", "news"}, {"privateGroup", "carol"}}},
		{"a problem", StreamUsers, "uid=dave,ou=people,dc=example,dc=org", [][]string{{"uid", "dave"}, {"uidNumber", "x"}, {"gidNumber", "1"}}},
		{"a disabled user", StreamDisabled, "uid=erin,ou=people,dc=example,dc=org", nil},
	}
	var scratch entryScratch
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _, err := expect(entryOp(tt.dn, tt.attrs...), tagSearchResultEntry, "")
			if err != nil {
				t.Fatal(err)
			}
			own, err := decodeEntry(body)
			if err != nil {
				t.Fatal(err)
			}
			want := em.mapEntry(tt.stream, own)
			buf := bytes.Clone(body)
			e, err := scratch.transient(buf)
			if err != nil {
				t.Fatal(err)
			}
			got := em.mapTransient(tt.stream, e)
			// The next message: the buffer overwritten, the scratch
			// holding another entry.
			for i := range buf {
				buf[i] = 'X'
			}
			next, _, _ := expect(entryOp("uid=zed,dc=x", [][]string{{"optOut", "z1", "z2", "z3", "z4"}, {"uid", "zed"}}...), tagSearchResultEntry, "")
			if _, err := scratch.transient(next); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("mapped from a transient entry:\n%+v %+v\nfrom its own:\n%+v %+v", got, got.User, want, want.User)
			}
		})
	}
}

// sameTransient checks that an entry decoded in a scratch used before is
// the entry decodeEntry makes, error for error (FuzzLeanEntry).
func sameTransient(t *testing.T, scratch *entryScratch, body []byte) {
	t.Helper()
	want, werr := decodeEntry(body)
	got, err := scratch.transient(body)
	if (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
		t.Fatalf("transient: %v, decodeEntry: %v", err, werr)
	}
	if err != nil {
		return
	}
	if err := sameEntries([]*ldap.Entry{want}, []*ldap.Entry{got}); err != nil {
		t.Fatal(err)
	}
}

// TestSearchMapped: a mapped search hands over what mapEntry made of each
// entry, except an entry with a ranged attribute, which comes whole.
func TestSearchMapped(t *testing.T) {
	req := ldap.NewSearchRequest("dc=example,dc=org", ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, server := net.Pipe()
	go serveOnce(server,
		entryOp("uid=a,dc=example,dc=org", []string{"uid", "a"}),
		entryOp("cn=g,dc=example,dc=org", []string{"member;range=0-1", "uid=a", "uid=b"}),
		entryOp("uid=b,dc=example,dc=org", []string{"uid", "b"}),
		doneOK)
	c := newConnection(client)
	c.start()
	defer c.Close()
	resp := c.SearchMapped(ctx, req, 16, func(e *ldap.Entry) any { return strings.Clone(e.DN) })
	var got []string
	for resp.Next() {
		switch e, m := resp.Entry(), resp.Mapped(); {
		case m != nil && e != nil:
			t.Fatalf("both an entry and its mapping: %v", m)
		case m != nil:
			got = append(got, "mapped "+m.(string))
		case e != nil:
			got = append(got, "whole "+e.DN+" "+strings.Join(e.GetAttributeValues("member;range=0-1"), " "))
		}
	}
	if err := resp.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"mapped uid=a,dc=example,dc=org", "whole cn=g,dc=example,dc=org uid=a uid=b", "mapped uid=b,dc=example,dc=org"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
