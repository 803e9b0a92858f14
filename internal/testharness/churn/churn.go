// Package churn makes random changes to a test directory, as a busy
// centre's admins would: users and collaborations added, modified,
// renamed and deleted, members added and removed. The same seed gives the
// same changes.
package churn

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// Churn knows the directory it changes: it reads it once, then keeps
// track of its own changes.
type Churn struct {
	conn     *ldap.Conn
	rnd      *rand.Rand
	people   string // ou=people,<suffix>
	groups   string // ou=groups,<suffix>
	memberDN bool   // groupOfNames with member DNs, else posixGroup with memberUid
	users    []string
	colls    []string
	members  map[string][]string // collaboration → uids
	next     int
	// Counts of what was done, by operation.
	Done map[string]int
}

// New reads the users and collaborations under ou=people and ou=groups of
// suffix.
func New(conn *ldap.Conn, suffix string, seed uint64, memberDN bool) (*Churn, error) {
	c := &Churn{conn: conn, rnd: rand.New(rand.NewPCG(seed, seed^0x5eed)), people: "ou=people," + suffix, groups: "ou=groups," + suffix,
		memberDN: memberDN, members: map[string][]string{}, Done: map[string]int{}}
	res, err := conn.Search(ldap.NewSearchRequest(c.people, ldap.ScopeSingleLevel, 0, 0, 0, false, "(uid=*)", []string{"uid"}, nil))
	if err != nil {
		return nil, err
	}
	for _, e := range res.Entries {
		c.users = append(c.users, e.GetAttributeValue("uid"))
	}
	memberAttr := "memberUid"
	if memberDN {
		memberAttr = "member"
	}
	res, err = conn.Search(ldap.NewSearchRequest(c.groups, ldap.ScopeSingleLevel, 0, 0, 0, false, "(cn=*)", []string{"cn", memberAttr}, nil))
	if err != nil {
		return nil, err
	}
	for _, e := range res.Entries {
		name := e.GetAttributeValue("cn")
		c.colls = append(c.colls, name)
		for _, v := range e.GetAttributeValues(memberAttr) {
			if memberDN {
				dn, err := ldap.ParseDN(v)
				if err != nil || len(dn.RDNs) == 0 {
					continue
				}
				v = dn.RDNs[0].Attributes[0].Value
			}
			c.members[name] = append(c.members[name], v)
		}
	}
	if len(c.users) == 0 || len(c.colls) == 0 {
		return nil, fmt.Errorf("churn needs users and collaborations to start from")
	}
	return c, nil
}

func (c *Churn) userDN(uid string) string  { return "uid=" + ldap.EscapeDN(uid) + "," + c.people }
func (c *Churn) groupDN(cn string) string  { return "cn=" + ldap.EscapeDN(cn) + "," + c.groups }
func (c *Churn) pick(list []string) string { return list[c.rnd.IntN(len(list))] }

func (c *Churn) memberValue(uid string) string {
	if c.memberDN {
		return c.userDN(uid)
	}
	return uid
}

func (c *Churn) memberAttr() string {
	if c.memberDN {
		return "member"
	}
	return "memberUid"
}

// Step makes one random change and says what it was.
func (c *Churn) Step() (string, error) {
	c.next++
	op := c.rnd.IntN(100)
	var desc string
	var err error
	switch {
	case op < 30:
		desc, err = c.addMember(true)
	case op < 50:
		desc, err = c.removeMember(true)
	case op < 60:
		desc, err = c.modifyUser(true)
	case op < 68:
		desc, err = c.addUser()
	case op < 74:
		desc, err = c.deleteUser()
	case op < 80:
		desc, err = c.renameUser()
	case op < 88:
		desc, err = c.modifyGroup()
	case op < 93:
		desc, err = c.addGroup()
	case op < 96:
		desc, err = c.deleteGroup()
	default:
		desc, err = c.renameGroup()
	}
	if err != nil {
		return desc, fmt.Errorf("%s: %w", desc, err)
	}
	c.Done[strings.Fields(desc)[0]]++
	return desc, nil
}

// StepAttributes makes one random change of a membership or of a user's
// name or shell (no entry added, removed or renamed, no number changed:
// a change the rules and the targets take by its difference) and says
// what it was.
func (c *Churn) StepAttributes() (string, error) {
	c.next++
	var desc string
	var err error
	switch op := c.rnd.IntN(100); {
	case op < 45:
		desc, err = c.addMember(false)
	case op < 80:
		desc, err = c.removeMember(false)
	default:
		desc, err = c.modifyUser(false)
	}
	if err != nil {
		return desc, fmt.Errorf("%s: %w", desc, err)
	}
	c.Done[strings.Fields(desc)[0]]++
	return desc, nil
}

// addMember puts a user into a collaboration, or takes them out if they
// are in (numbers as removeMember).
func (c *Churn) addMember(numbers bool) (string, error) {
	g, u := c.pick(c.colls), c.pick(c.users)
	if slices.Contains(c.members[g], u) {
		return c.removeMember(numbers)
	}
	req := ldap.NewModifyRequest(c.groupDN(g), nil)
	req.Add(c.memberAttr(), []string{c.memberValue(u)})
	c.members[g] = append(c.members[g], u)
	return "add-member " + u + " to " + g, c.conn.Modify(req)
}

// removeMember takes a member out of a collaboration; of one it cannot,
// it changes a user instead (numbers: maybe its gidNumber).
func (c *Churn) removeMember(numbers bool) (string, error) {
	g := c.pick(c.colls)
	if len(c.members[g]) == 0 || (c.memberDN && len(c.members[g]) == 1) { // groupOfNames needs a member
		return c.modifyUser(numbers)
	}
	u := c.pick(c.members[g])
	req := ldap.NewModifyRequest(c.groupDN(g), nil)
	req.Delete(c.memberAttr(), []string{c.memberValue(u)})
	c.members[g] = slices.DeleteFunc(c.members[g], func(x string) bool { return x == u })
	return "remove-member " + u + " from " + g, c.conn.Modify(req)
}

// modifyUser changes a user's shell, name or (numbers) gidNumber.
func (c *Churn) modifyUser(numbers bool) (string, error) {
	u := c.pick(c.users)
	req := ldap.NewModifyRequest(c.userDN(u), nil)
	n := 2
	if numbers {
		n = 3
	}
	switch c.rnd.IntN(n) {
	case 0:
		req.Replace("loginShell", []string{fmt.Sprintf("/bin/shell%d", c.rnd.IntN(5))})
	case 1:
		req.Replace("cn", []string{fmt.Sprintf("Renamed Person %d", c.next)})
	default:
		req.Replace("gidNumber", []string{fmt.Sprint(200000 + c.rnd.IntN(50))})
	}
	return "modify-user " + u, c.conn.Modify(req)
}

func (c *Churn) addUser() (string, error) {
	uid := fmt.Sprintf("n%05d", c.next)
	req := ldap.NewAddRequest(c.userDN(uid), nil)
	req.Attribute("objectClass", []string{"inetOrgPerson", "posixAccount"})
	req.Attribute("uid", []string{uid})
	req.Attribute("cn", []string{"New " + uid})
	req.Attribute("sn", []string{uid})
	req.Attribute("mail", []string{uid + "@example.org"})
	req.Attribute("uidNumber", []string{fmt.Sprint(500000 + c.next)})
	req.Attribute("gidNumber", []string{"200000"})
	req.Attribute("homeDirectory", []string{"/home/" + uid})
	c.users = append(c.users, uid)
	return "add-user " + uid, c.conn.Add(req)
}

// deleteUser deletes a user and, as a careful admin would not always, not
// their memberships: some references dangle.
func (c *Churn) deleteUser() (string, error) {
	if len(c.users) < 3 {
		return c.addUser()
	}
	u := c.pick(c.users)
	c.users = slices.DeleteFunc(c.users, func(x string) bool { return x == u })
	return "delete-user " + u, c.conn.Del(ldap.NewDelRequest(c.userDN(u), nil))
}

func (c *Churn) renameUser() (string, error) {
	u := c.pick(c.users)
	to := fmt.Sprintf("r%05d", c.next)
	req := ldap.NewModifyDNRequest(c.userDN(u), "uid="+to, true, "")
	for i, x := range c.users {
		if x == u {
			c.users[i] = to
		}
	}
	// Memberships still name the old uid (or DN): they dangle now.
	for g, ms := range c.members {
		c.members[g] = slices.DeleteFunc(ms, func(x string) bool { return x == u })
	}
	return "rename-user " + u + " to " + to, c.conn.ModifyDN(req)
}

func (c *Churn) modifyGroup() (string, error) {
	g := c.pick(c.colls)
	req := ldap.NewModifyRequest(c.groupDN(g), nil)
	req.Replace("gidNumber", []string{fmt.Sprint(300000 + c.next)})
	return "modify-group " + g, c.conn.Modify(req)
}

func (c *Churn) addGroup() (string, error) {
	cn := fmt.Sprintf("g%05d", c.next)
	req := ldap.NewAddRequest(c.groupDN(cn), nil)
	u := c.pick(c.users)
	if c.memberDN {
		req.Attribute("objectClass", []string{"groupOfNames", "extensibleObject"})
		req.Attribute("member", []string{c.userDN(u)})
	} else {
		req.Attribute("objectClass", []string{"posixGroup"})
		req.Attribute("memberUid", []string{u})
	}
	req.Attribute("cn", []string{cn})
	req.Attribute("gidNumber", []string{fmt.Sprint(400000 + c.next)})
	c.colls = append(c.colls, cn)
	c.members[cn] = []string{u}
	return "add-group " + cn, c.conn.Add(req)
}

func (c *Churn) deleteGroup() (string, error) {
	if len(c.colls) < 3 {
		return c.addGroup()
	}
	g := c.pick(c.colls)
	c.colls = slices.DeleteFunc(c.colls, func(x string) bool { return x == g })
	delete(c.members, g)
	return "delete-group " + g, c.conn.Del(ldap.NewDelRequest(c.groupDN(g), nil))
}

func (c *Churn) renameGroup() (string, error) {
	g := c.pick(c.colls)
	to := fmt.Sprintf("h%05d", c.next)
	for i, x := range c.colls {
		if x == g {
			c.colls[i] = to
		}
	}
	c.members[to] = c.members[g]
	delete(c.members, g)
	return "rename-group " + g + " to " + to, c.conn.ModifyDN(ldap.NewModifyDNRequest(c.groupDN(g), "cn="+to, true, ""))
}
