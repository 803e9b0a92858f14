package directory

import (
	"fmt"
	"strings"
	"testing"
)

func TestFinishDropsDuplicates(t *testing.T) {
	s := &Snapshot{
		Users: []User{
			{DN: "uid=b,o=x", UID: "bob"}, {DN: "uid=a,o=x", UID: "alice"}, {DN: "cn=b2,o=x", UID: "bob"},
		},
		Collaborations: []Collaboration{
			{DN: "cn=p,o=x", Name: "p", Members: []string{"alice", "bob"}},
			{DN: "cn=p,o=y", Name: "p"}, {DN: "cn=q,o=x", Name: "q", Members: []string{"bob"}},
		},
	}
	s.Finish()
	if fmt.Sprintf("%d %s", len(s.Users), s.Users[0].UID) != "1 alice" {
		t.Errorf("users = %+v", s.Users)
	}
	if len(s.Collaborations) != 1 || s.Collaborations[0].Name != "q" || len(s.Collaborations[0].Members) != 0 {
		t.Errorf("collaborations = %+v (duplicates out, bob pruned)", s.Collaborations)
	}
	var b strings.Builder
	for _, p := range s.Problems {
		b.WriteString(p.String() + "\n")
	}
	want := `cn=b2,o=x: duplicate uid "bob", also used by uid=b,o=x; neither is provisioned
cn=p,o=x: duplicate collaboration name "p", also used by cn=p,o=y; neither is provisioned
cn=p,o=y: duplicate collaboration name "p", also used by cn=p,o=x; neither is provisioned
uid=b,o=x: duplicate uid "bob", also used by cn=b2,o=x; neither is provisioned
`
	if b.String() != want {
		t.Errorf("problems:\n%s\nwant:\n%s", b.String(), want)
	}
}
