package ldapx

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/collabsync/collabsync/internal/config"
)

// TestModelSnapshotIsResolve: the live model reuses the users' share and
// each collaboration resolved before while nothing it depends on changed.
// Through random changes of users, collaborations (members and contacts by
// attribute) and role groups, every snapshot it gives equals resolving its
// entries from scratch.
func TestModelSnapshotIsResolve(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("x"), 0o600)
	cfg, err := config.Parse("c.yaml", []byte(`ldap:
  uris: ["ldap://127.0.0.1"]
  bind: {dn: "cn=x", password_file: "`+pw+`"}
  users: {base_dn: "ou=people,dc=x"}
  collaborations:
    base_dn: "ou=groups,dc=x"
    membership: member_dn
    contacts:
      attributes: {computing: computingContact}
      groups: {base_dn: "ou=roles,dc=x"}
state_dir: /tmp
`))
	if err != nil {
		t.Fatal(err)
	}
	m := NewModel(cfg.LDAP, func() {})
	for _, s := range m.streams {
		m.beginRefresh(s, false)
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	userDN := func(i int) string { return fmt.Sprintf("uid=u%d,ou=people,dc=x", i) }
	someUsers := func() []string {
		var out []string
		for range rnd.IntN(4) {
			out = append(out, userDN(rnd.IntN(30))) // some dangle
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
				"cn": {fmt.Sprintf("g%d", j%5)}, "gidNumber": {fmt.Sprint(2000 + j)}, "member": someUsers(), "computingContact": someUsers()}))
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
	}
}
