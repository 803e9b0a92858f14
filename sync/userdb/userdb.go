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
	"syscall"
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

	mu      sync.Mutex
	serving bool
	err     string
	conns   int
	byUID   map[uint32]int
	refused uint64
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

// Limits a local user cannot take the provider down through: every
// process of the machine may connect, so connections are capped per peer
// uid and in all, and a client that does not read its replies is cut off
// at writeTimeout.
const (
	maxConnsPerUID = 32
	maxConns       = 1024
	writeTimeout   = 5 * time.Second
)

// Health is how the provider is doing, for metrics and status.
type Health struct {
	Serving     bool   `json:"serving"`
	Err         string `json:"error,omitempty"` // why it is not serving, or the last accept error
	Connections int    `json:"connections"`
	// Refused counts connections closed at once: their uid was at its
	// cap, or all were.
	Refused uint64 `json:"refused_connections"`
}

// Health reports the provider's state.
func (p *Provider) Health() Health {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Health{Serving: p.serving, Err: p.err, Connections: p.conns, Refused: p.refused}
}

func (p *Provider) setServing(serving bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.serving, p.err = serving, ""
	if err != nil {
		p.err = err.Error()
	}
}

// Serve listens on dir/<service> until ctx ends. The socket is made
// anew (a stale one from a killed daemon is removed) and readable by
// every user, as NSS lookups come from every process. A failing accept
// (too many open files) is retried with backoff: the socket stays, and
// is removed only at the end, and only if it is still this one.
func (p *Provider) Serve(ctx context.Context, dir string) (err error) {
	defer func() { p.setServing(false, err) }()
	path := filepath.Join(dir, p.service)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("userdb: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("userdb: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("userdb: %w", err)
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return fmt.Errorf("userdb: %w", err)
	}
	mine, err := os.Stat(path)
	if err != nil {
		l.Close()
		return fmt.Errorf("userdb: %w", err)
	}
	p.setServing(true, nil)
	go func() { <-ctx.Done(); l.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer func() {
		if fi, err := os.Stat(path); err == nil && os.SameFile(fi, mine) {
			os.Remove(path)
		}
	}()
	backoff := 5 * time.Millisecond
	for {
		conn, err := ul.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("userdb: %w", err)
			}
			// EMFILE, ENFILE, ECONNABORTED: wait, and go on.
			p.setServing(true, fmt.Errorf("accept (retrying): %w", err))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		uid, ok := p.admit(conn)
		if !ok {
			conn.Close()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer p.release(uid)
			p.serveConn(ctx, conn)
		}()
	}
}

// admit counts a connection against its peer's uid; false when the uid
// or the provider is at its cap.
func (p *Provider) admit(conn *net.UnixConn) (uint32, bool) {
	uid := uint32(1<<32 - 1) // unknown peer: one shared allowance
	if raw, err := conn.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) {
			if cred, err := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED); err == nil {
				uid = cred.Uid
			}
		})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns >= maxConns || p.byUID[uid] >= maxConnsPerUID {
		p.refused++
		return uid, false
	}
	if p.byUID == nil {
		p.byUID = map[uint32]int{}
	}
	p.byUID[uid]++
	p.conns++
	return uid, true
}

func (p *Provider) release(uid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns--
	if p.byUID[uid]--; p.byUID[uid] == 0 {
		delete(p.byUID, uid)
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
// ended by a NUL byte. Replies are written as they are made, each within
// writeTimeout: an enumeration of every user holds one reply at a time,
// and a client that does not read is cut off.
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
	w := &replier{conn: conn, w: bufio.NewWriter(conn)}
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
		w.start(req)
		p.call(req, w.send)
		if w.finish() != nil {
			return
		}
	}
}

// replier writes one call's replies: each is held until the next comes
// (which says whether it "continues"), more than one without "more" is
// the interface's ExpectedMore, none its NoRecordFound.
type replier struct {
	conn    net.Conn
	w       *bufio.Writer
	req     request
	pending reply
	n       int
	err     error
}

// errStop ends a call's replies early.
var errStop = errors.New("stop")

func (r *replier) start(req request) { r.req, r.pending, r.n, r.err = req, nil, 0, nil }

func (r *replier) send(rep reply) error {
	if r.err != nil {
		return r.err
	}
	if r.n == 1 && !r.req.More {
		r.pending, r.err = failure(errExpectMore), errStop
		return r.err
	}
	if r.pending != nil {
		r.pending["continues"] = true
		if r.err = r.write(r.pending); r.err != nil {
			return r.err
		}
	}
	r.pending = rep
	r.n++
	return nil
}

// finish writes the last reply; an error means the connection is done.
func (r *replier) finish() error {
	if r.err != nil && r.err != errStop {
		return r.err
	}
	if r.pending == nil {
		r.pending = failure(errNoRecord)
	}
	if r.req.Oneway {
		return nil
	}
	if err := r.write(r.pending); err != nil {
		return err
	}
	r.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return r.w.Flush()
}

func (r *replier) write(rep reply) error {
	if r.req.Oneway {
		return nil
	}
	data, _ := json.Marshal(rep)
	r.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := r.w.Write(data); err != nil {
		return err
	}
	return r.w.WriteByte(0)
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

func failure(name string) reply { return reply{"error": name, "parameters": reply{}} }

// call answers one request, handing each reply to emit, which may stop
// it (an error).
func (p *Provider) call(req request, emit func(reply) error) {
	var pr params
	if len(req.Parameters) > 0 {
		if err := json.Unmarshal(req.Parameters, &pr); err != nil {
			emit(reply{"error": errInvalidArgs, "parameters": reply{"parameter": "parameters"}})
			return
		}
	}
	switch req.Method {
	case "io.systemd.UserDatabase.GetUserRecord", "io.systemd.UserDatabase.GetGroupRecord", "io.systemd.UserDatabase.GetMemberships":
	case "org.varlink.service.GetInfo":
		emit(reply{"parameters": reply{"vendor": "collabsync", "product": "collabsync", "version": "1", "url": "",
			"interfaces": []string{"io.systemd.UserDatabase", "org.varlink.service"}}})
		return
	default:
		emit(reply{"error": errNoMethod, "parameters": reply{"method": req.Method}})
		return
	}
	if pr.Service != p.service {
		emit(failure(errBadService))
		return
	}
	idx := p.idx.Load()
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
				emit(reply{"parameters": reply{"record": &idx.users[i], "incomplete": false}})
			}
			return
		}
		for i := range idx.users {
			if emit(reply{"parameters": reply{"record": &idx.users[i], "incomplete": false}}) != nil {
				return
			}
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
				emit(reply{"parameters": reply{"record": &idx.groups[i], "incomplete": false}})
			}
			return
		}
		for i := range idx.groups {
			if emit(reply{"parameters": reply{"record": &idx.groups[i], "incomplete": false}}) != nil {
				return
			}
		}
	case "io.systemd.UserDatabase.GetMemberships":
		switch {
		case pr.UserName != nil:
			for _, g := range idx.memberOf[*pr.UserName] {
				if pr.GroupName == nil || *pr.GroupName == g {
					if emit(reply{"parameters": reply{"userName": *pr.UserName, "groupName": g}}) != nil {
						return
					}
				}
			}
		case pr.GroupName != nil:
			if i, ok := idx.groupByNm[*pr.GroupName]; ok {
				for _, m := range idx.groups[i].Members {
					if emit(reply{"parameters": reply{"userName": m, "groupName": *pr.GroupName}}) != nil {
						return
					}
				}
			}
		default:
			for i := range idx.groups {
				for _, m := range idx.groups[i].Members {
					if emit(reply{"parameters": reply{"userName": m, "groupName": idx.groups[i].GroupName}}) != nil {
						return
					}
				}
			}
		}
	}
}
