package ldapx

import (
	"context"
	"encoding/hex"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// TestSavedEntryRoundTrip: an entry kept in the journal comes back with
// each attribute once, in name order, its values as received (a name
// given twice merged), empty values and bytes of any value kept.
func TestSavedEntryRoundTrip(t *testing.T) {
	e := &ldap.Entry{DN: "uid=a,ou=people", Attributes: []*ldap.EntryAttribute{
		{Name: "uid", Values: []string{"a"}},
		{Name: "memberUid", Values: []string{"x", "", "\x00\xff"}},
		{Name: "cn", Values: nil},
		{Name: "memberUid", Values: []string{"y"}},
	}}
	got, err := decodeSaved(e.DN, encodeSaved(e))
	if err != nil {
		t.Fatal(err)
	}
	want := &ldap.Entry{DN: e.DN, Attributes: []*ldap.EntryAttribute{
		{Name: "cn", Values: []string{}},
		{Name: "memberUid", Values: []string{"x", "", "\x00\xff", "y"}},
		{Name: "uid", Values: []string{"a"}},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got.Attributes, want.Attributes)
	}
	for _, bad := range []string{"", "\x01", "\x01\x05ab", "\x01\x01a\x02\x01x", "\x00\x00", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"} {
		if _, err := decodeSaved("cn=x", []byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// FuzzDecodeSaved: what the journal holds never panics the decoder (a
// corrupt store is an error naming the entry), and what it decodes
// encodes back to the same bytes when its names come once and in order.
func FuzzDecodeSaved(f *testing.F) {
	f.Add(encodeSaved(&ldap.Entry{Attributes: []*ldap.EntryAttribute{{Name: "a", Values: []string{"1", "2"}}, {Name: "b"}}}))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeSaved("cn=x", b)
		if err != nil {
			return
		}
		again, err := decodeSaved("cn=x", encodeSaved(e))
		if err != nil {
			t.Fatalf("re-encoded entry: %v", err)
		}
		merged := map[string][]string{}
		for _, at := range e.Attributes {
			merged[at.Name] = append(merged[at.Name], at.Values...)
		}
		for _, at := range again.Attributes {
			if !reflect.DeepEqual(append([]string{}, at.Values...), append([]string{}, merged[at.Name]...)) {
				t.Fatalf("%s: %q, want %q", at.Name, at.Values, merged[at.Name])
			}
			delete(merged, at.Name)
		}
		if len(merged) != 0 {
			t.Fatalf("attributes lost: %v", merged)
		}
	})
}

// fakeJournal serves saved entries to Load and counts those it gave.
type fakeJournal struct {
	entries [][4]string // stream, hex key, DN, attrs
	read    int
}

func (f *fakeJournal) LoadModel(_ context.Context, _ string, each func(stream, key, dn string, attrs []byte) error) (map[string][]byte, error) {
	for _, e := range f.entries {
		f.read++
		if err := each(e[0], e[1], e[2], []byte(e[3])); err != nil {
			return nil, err
		}
	}
	return map[string][]byte{string(StreamUsers): []byte("cookie-1")}, nil
}

func (f *fakeJournal) SaveModel(context.Context, func(func(stream, key, dn string, attrs []byte) error) error, map[string][]byte) error {
	return nil
}

// TestLoadRestoresOrStops: a saved model is restored whole (its entries
// decoded and mapped beside the journal's read), with its cookie; one
// broken entry among 10,000 is an error naming it, stops the read soon
// after, and leaves the model empty, with no cookie.
func TestLoadRestoresOrStops(t *testing.T) {
	cfg := minimalSection(t, "", "")
	saved := func(broken int) *fakeJournal {
		f := &fakeJournal{}
		for i := range 10_000 {
			dn := fmt.Sprintf("uid=u%05d,ou=people,dc=x", i)
			attrs := string(encodeSaved(ldap.NewEntry(dn, map[string][]string{"uid": {fmt.Sprintf("u%05d", i)}, "uidNumber": {fmt.Sprint(1000 + i)}, "gidNumber": {"100"}})))
			if i == broken {
				attrs = "\xff\xff"
			}
			f.entries = append(f.entries, [4]string{string(StreamUsers), hex.EncodeToString([]byte(dn)), dn, attrs})
		}
		return f
	}
	m := NewModel(cfg, func() {})
	if n, err := m.Load(context.Background(), saved(-1)); n != 10_000 || err != nil || string(m.cookie(StreamUsers)) != "cookie-1" {
		t.Fatalf("restored %d, %v, cookie %q", n, err, m.cookie(StreamUsers))
	}
	if got := len(m.entries[StreamUsers]); got != 10_000 {
		t.Fatalf("%d users in the model", got)
	}
	m = NewModel(cfg, func() {})
	f := saved(1000)
	n, err := m.Load(context.Background(), f)
	if n != 0 || err == nil || !strings.Contains(err.Error(), "uid=u01000,ou=people,dc=x") {
		t.Fatalf("with a broken entry: restored %d, %v", n, err)
	}
	if len(m.entries[StreamUsers]) != 0 || m.cookie(StreamUsers) != nil {
		t.Errorf("with a broken entry: %d users and cookie %q kept", len(m.entries[StreamUsers]), m.cookie(StreamUsers))
	}
	if f.read == len(f.entries) {
		t.Errorf("the journal was read to its end after the broken entry")
	}
}
