package ldapx

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// rangedConn answers base searches for member;range=N-* as Active
// Directory does, 1,500 values at a time (Samba does not range, so this
// fake stands beside the real AD test).
type rangedConn struct {
	members []string
	asked   []string
}

func (c *rangedConn) SearchAsync(_ context.Context, req *ldap.SearchRequest, _ int) ldap.Response {
	c.asked = append(c.asked, req.Attributes[0])
	var from int
	fmt.Sscanf(strings.TrimPrefix(req.Attributes[0], "member;range="), "%d-*", &from)
	to := min(from+1500, len(c.members))
	name := fmt.Sprintf("member;range=%d-%d", from, to-1)
	if to == len(c.members) {
		name = fmt.Sprintf("member;range=%d-*", from)
	}
	e := &ldap.Entry{DN: "CN=big", Attributes: []*ldap.EntryAttribute{{Name: name, Values: c.members[from:to]}}}
	return &fakeResponse{items: []ldap.SearchSingleResult{{Entry: e}}}
}

func (c *rangedConn) Close() error { return nil }

func TestCompleteRanges(t *testing.T) {
	c := &rangedConn{}
	for i := range 3700 {
		c.members = append(c.members, fmt.Sprintf("CN=u%d", i))
	}
	e := &ldap.Entry{DN: "CN=big", Attributes: []*ldap.EntryAttribute{
		{Name: "cn", Values: []string{"big"}},
		{Name: "member;range=0-1499", Values: c.members[:1500]},
	}}
	if err := completeRanges(context.Background(), c, e); err != nil {
		t.Fatal(err)
	}
	got := e.GetAttributeValues("member")
	if len(got) != 3700 || got[0] != "CN=u0" || got[3699] != "CN=u3699" {
		t.Errorf("got %d members", len(got))
	}
	if want := []string{"member;range=1500-*", "member;range=3000-*"}; strings.Join(c.asked, " ") != strings.Join(want, " ") {
		t.Errorf("asked %v, want %v", c.asked, want)
	}
	if e.GetAttributeValue("cn") != "big" {
		t.Error("other attributes lost")
	}
}
