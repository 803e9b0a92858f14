package ldapx

import (
	"reflect"
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
