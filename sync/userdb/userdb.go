// Package userdb serves the effective state as systemd's
// io.systemd.UserDatabase Varlink interface (systemd.io/USER_GROUP_API),
// so that on a machine with nss-systemd (Debian's default "passwd: files
// systemd") getent, id and userdbctl see collaboration members live, with
// no NSS module and no file copy. Records follow systemd's JSON user and
// group records and carry the service name, without which clients drop
// them.
package userdb

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
)

// Dir is where systemd looks for userdb services' sockets.
const Dir = "/run/systemd/userdb"

// The interface's errors.
const (
	errNoRecord    = "io.systemd.UserDatabase.NoRecordFound"
	errBadService  = "io.systemd.UserDatabase.BadService"
	errNoMethod    = "org.varlink.service.MethodNotFound"
	errExpectMore  = "org.varlink.service.ExpectedMore"
	errInvalidArgs = "org.varlink.service.InvalidParameter"
)

// maxMessage bounds one request: a lookup is a few hundred bytes.
const maxMessage = 64 << 10

// idleTimeout ends a connection that sends nothing.
const idleTimeout = 30 * time.Second

// user and group are the JSON records served.
type user struct {
	UserName      string `json:"userName"`
	UID           uint32 `json:"uid"`
	GID           uint32 `json:"gid"`
	RealName      string `json:"realName,omitempty"`
	HomeDirectory string `json:"homeDirectory"`
	Shell         string `json:"shell"`
	Disposition   string `json:"disposition"`
	Service       string `json:"service"`
}

type group struct {
	GroupName   string   `json:"groupName"`
	GID         uint32   `json:"gid"`
	Members     []string `json:"members,omitempty"`
	Disposition string   `json:"disposition"`
	Service     string   `json:"service"`
}

// index is one state's records, looked up by name and number.
type index struct {
	users      []user
	groups     []group
	userByName map[string]int
	userByUID  map[uint32]int
	groupByNm  map[string]int
	groupByGID map[uint32]int
	// memberOf: a user's groups, by user name.
	memberOf map[string][]string
}

// Provider answers lookups from the last state it was given.
type Provider struct {
	service string
	idx     atomic.Pointer[index]
}

// New returns a provider for the service name (the socket's name).
func New(service string) *Provider {
	p := &Provider{service: service}
	p.idx.Store(&index{})
	return p
}

// Set makes a state the one served: its active users and production
// accounts, their private groups, its provisioned collaborations with
// their active members.
func (p *Provider) Set(state *directory.State) {
	idx := &index{userByName: map[string]int{}, userByUID: map[uint32]int{}, groupByNm: map[string]int{}, groupByGID: map[uint32]int{},
		memberOf: map[string][]string{}}
	addUser := func(u user) {
		idx.userByName[u.UserName] = len(idx.users)
		idx.userByUID[u.UID] = len(idx.users)
		idx.users = append(idx.users, u)
	}
	for _, u := range state.Users {
		if u.Status == directory.StatusActive {
			addUser(user{UserName: u.UID, UID: u.UIDNumber, GID: u.GIDNumber, RealName: u.Name, HomeDirectory: u.Home, Shell: u.Shell,
				Disposition: "regular", Service: p.service})
		}
	}
	for _, a := range state.ProductionAccounts {
		if a.Active {
			addUser(user{UserName: a.Name, UID: a.UIDNumber, GID: a.GIDNumber, RealName: "production account of " + a.Collaboration,
				HomeDirectory: a.Home, Shell: a.Shell, Disposition: "regular", Service: p.service})
		}
	}
	for _, u := range state.Users {
		if u.OwnGroup {
			idx.groupByNm[u.PrivateGroup] = len(idx.groups)
			idx.groupByGID[u.GIDNumber] = len(idx.groups)
			idx.groups = append(idx.groups, group{GroupName: u.PrivateGroup, GID: u.GIDNumber, Disposition: "regular", Service: p.service})
		}
	}
	for _, c := range state.Collaborations {
		if !c.Provisioned {
			continue
		}
		idx.groupByNm[c.Name] = len(idx.groups)
		idx.groupByGID[c.GIDNumber] = len(idx.groups)
		idx.groups = append(idx.groups, group{GroupName: c.Name, GID: c.GIDNumber, Members: c.ActiveMembers, Disposition: "regular", Service: p.service})
		for _, m := range c.ActiveMembers {
			idx.memberOf[m] = append(idx.memberOf[m], c.Name)
		}
	}
	p.idx.Store(idx)
}

// Serve listens on dir/<service> until ctx ends. The socket is made
// anew (a stale one from a killed daemon is removed) and readable by
// every user, as NSS lookups come from every process.
func (p *Provider) Serve(ctx context.Context, dir string) error {
	path := filepath.Join(dir, p.service)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("userdb: %w", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return err
	}
	go func() { <-ctx.Done(); l.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer os.Remove(path)
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("userdb: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.serveConn(ctx, conn)
		}()
	}
}

// request is a Varlink call.
type request struct {
	Method     string          `json:"method"`
	Parameters json.RawMessage `json:"parameters"`
	More       bool            `json:"more"`
	Oneway     bool            `json:"oneway"`
}

type params struct {
	UID       *uint32 `json:"uid"`
	GID       *uint32 `json:"gid"`
	UserName  *string `json:"userName"`
	GroupName *string `json:"groupName"`
	Service   string  `json:"service"`
}

// serveConn answers a connection's calls, one at a time, each message
// ended by a NUL byte.
func (p *Provider) serveConn(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			conn.Close()
		case <-done:
		}
	}()
	r := bufio.NewReader(conn)
	w := bufio.NewWriter(conn)
	for {
		// A client idle that long is gone (nss-systemd asks and hangs up).
		conn.SetReadDeadline(time.Now().Add(idleTimeout))
		msg, err := readMessage(r)
		if err != nil {
			return
		}
		var req request
		if err := json.Unmarshal(msg, &req); err != nil {
			return // not Varlink: hang up
		}
		replies := p.call(req)
		if req.Oneway {
			continue
		}
		for i, rep := range replies {
			if i < len(replies)-1 {
				rep["continues"] = true
			}
			data, _ := json.Marshal(rep)
			w.Write(data)
			w.WriteByte(0)
		}
		if w.Flush() != nil {
			return
		}
	}
}

// readMessage reads up to the next NUL, refusing overlong messages.
func readMessage(r *bufio.Reader) ([]byte, error) {
	var buf bytes.Buffer
	for {
		chunk, err := r.ReadSlice(0)
		buf.Write(chunk)
		if buf.Len() > maxMessage {
			return nil, errors.New("message too long")
		}
		switch {
		case err == nil:
			return buf.Bytes()[:buf.Len()-1], nil
		case !errors.Is(err, bufio.ErrBufferFull):
			return nil, err
		}
	}
}

type reply = map[string]any

func failure(name string) []reply { return []reply{{"error": name, "parameters": reply{}}} }

// call answers one request: its replies, the last without "continues".
func (p *Provider) call(req request) []reply {
	var pr params
	if len(req.Parameters) > 0 {
		if err := json.Unmarshal(req.Parameters, &pr); err != nil {
			return []reply{{"error": errInvalidArgs, "parameters": reply{"parameter": "parameters"}}}
		}
	}
	switch req.Method {
	case "io.systemd.UserDatabase.GetUserRecord", "io.systemd.UserDatabase.GetGroupRecord", "io.systemd.UserDatabase.GetMemberships":
	case "org.varlink.service.GetInfo":
		return []reply{{"parameters": reply{"vendor": "collabsync", "product": "collabsync", "version": "1", "url": "",
			"interfaces": []string{"io.systemd.UserDatabase", "org.varlink.service"}}}}
	default:
		return []reply{{"error": errNoMethod, "parameters": reply{"method": req.Method}}}
	}
	if pr.Service != p.service {
		return failure(errBadService)
	}
	idx := p.idx.Load()
	var out []reply
	switch req.Method {
	case "io.systemd.UserDatabase.GetUserRecord":
		if pr.UID != nil || pr.UserName != nil {
			i, ok := -1, false
			if pr.UserName != nil {
				i, ok = idx.userByName[*pr.UserName]
			} else {
				i, ok = idx.userByUID[*pr.UID]
			}
			if ok && (pr.UID == nil || idx.users[i].UID == *pr.UID) {
				out = []reply{{"parameters": reply{"record": &idx.users[i], "incomplete": false}}}
			}
			break
		}
		for i := range idx.users {
			out = append(out, reply{"parameters": reply{"record": &idx.users[i], "incomplete": false}})
		}
	case "io.systemd.UserDatabase.GetGroupRecord":
		if pr.GID != nil || pr.GroupName != nil {
			i, ok := -1, false
			if pr.GroupName != nil {
				i, ok = idx.groupByNm[*pr.GroupName]
			} else {
				i, ok = idx.groupByGID[*pr.GID]
			}
			if ok && (pr.GID == nil || idx.groups[i].GID == *pr.GID) {
				out = []reply{{"parameters": reply{"record": &idx.groups[i], "incomplete": false}}}
			}
			break
		}
		for i := range idx.groups {
			out = append(out, reply{"parameters": reply{"record": &idx.groups[i], "incomplete": false}})
		}
	case "io.systemd.UserDatabase.GetMemberships":
		switch {
		case pr.UserName != nil:
			for _, g := range idx.memberOf[*pr.UserName] {
				if pr.GroupName == nil || *pr.GroupName == g {
					out = append(out, reply{"parameters": reply{"userName": *pr.UserName, "groupName": g}})
				}
			}
		case pr.GroupName != nil:
			if i, ok := idx.groupByNm[*pr.GroupName]; ok {
				for _, m := range idx.groups[i].Members {
					out = append(out, reply{"parameters": reply{"userName": m, "groupName": *pr.GroupName}})
				}
			}
		default:
			for i := range idx.groups {
				for _, m := range idx.groups[i].Members {
					out = append(out, reply{"parameters": reply{"userName": m, "groupName": idx.groups[i].GroupName}})
				}
			}
		}
	}
	if len(out) == 0 {
		return failure(errNoRecord)
	}
	if len(out) > 1 && !req.More {
		return failure(errExpectMore)
	}
	return out
}
