package userdb

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/directory"
)

func testProvider() *Provider {
	p := New("io.collabsync.Test")
	p.Set(&directory.State{
		Users: []directory.UserState{
			{User: &directory.User{UID: "alice", UIDNumber: 10001, GIDNumber: 20001, Name: "Alice", Home: "/home/alice", Shell: "/bin/bash"}, Status: directory.StatusActive},
			{User: &directory.User{UID: "bob", UIDNumber: 10002, GIDNumber: 20001, Home: "/home/bob", Shell: "/bin/sh"}, Status: directory.StatusActive},
			{User: &directory.User{UID: "carol", UIDNumber: 10003, GIDNumber: 20001}, Status: directory.StatusPending},
		},
		Collaborations: []directory.CollaborationState{
			{Collaboration: &directory.Collaboration{Name: "atlas", GIDNumber: 21001}, Provisioned: true, ActiveMembers: []string{"alice", "bob"}},
			{Collaboration: &directory.Collaboration{Name: "old", GIDNumber: 21002}, ActiveMembers: []string{"alice"}},
		},
	})
	return p
}

// exchange sends one call over a real socket and returns the replies.
func exchange(t *testing.T, method, params string, more bool) []map[string]any {
	t.Helper()
	dir := t.TempDir()
	p := testProvider()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, dir) }()
	defer func() { cancel(); <-done }()
	var conn net.Conn
	var err error
	for range 100 {
		if conn, err = net.Dial("unix", filepath.Join(dir, "io.collabsync.Test")); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, _ := json.Marshal(map[string]any{"method": method, "parameters": json.RawMessage(params), "more": more})
	conn.Write(append(req, 0))
	r := bufio.NewReader(conn)
	var out []map[string]any
	for {
		msg, err := r.ReadBytes(0)
		if err != nil {
			t.Fatalf("read: %v (after %v)", err, out)
		}
		var rep map[string]any
		if err := json.Unmarshal(msg[:len(msg)-1], &rep); err != nil {
			t.Fatal(err)
		}
		out = append(out, rep)
		if rep["continues"] != true {
			return out
		}
	}
}

func TestProtocol(t *testing.T) {
	const svc = `"service":"io.collabsync.Test"`
	for _, tc := range []struct {
		name, method, params string
		more                 bool
		want                 []string // a fragment of each reply
	}{
		{"user by name", "io.systemd.UserDatabase.GetUserRecord", `{"userName":"alice",` + svc + `}`, false,
			[]string{`"record":{"disposition":"regular","gid":20001,"homeDirectory":"/home/alice","realName":"Alice","service":"io.collabsync.Test","shell":"/bin/bash","uid":10001,"userName":"alice"}`}},
		{"user by uid", "io.systemd.UserDatabase.GetUserRecord", `{"uid":10002,` + svc + `}`, false, []string{`"userName":"bob"`}},
		{"name and uid disagree", "io.systemd.UserDatabase.GetUserRecord", `{"userName":"alice","uid":10002,` + svc + `}`, false,
			[]string{`"error":"io.systemd.UserDatabase.NoRecordFound"`}},
		{"a pending user is not served", "io.systemd.UserDatabase.GetUserRecord", `{"userName":"carol",` + svc + `}`, false,
			[]string{`"error":"io.systemd.UserDatabase.NoRecordFound"`}},
		{"another service", "io.systemd.UserDatabase.GetUserRecord", `{"userName":"alice","service":"io.systemd.Home"}`, false,
			[]string{`"error":"io.systemd.UserDatabase.BadService"`}},
		{"enumeration streams", "io.systemd.UserDatabase.GetUserRecord", `{` + svc + `}`, true,
			[]string{`"continues":true`, `"userName":"bob"`}},
		{"enumeration without more", "io.systemd.UserDatabase.GetUserRecord", `{` + svc + `}`, false,
			[]string{`"error":"org.varlink.service.ExpectedMore"`}},
		{"group", "io.systemd.UserDatabase.GetGroupRecord", `{"groupName":"atlas",` + svc + `}`, false,
			[]string{`"record":{"disposition":"regular","gid":21001,"groupName":"atlas","members":["alice","bob"],"service":"io.collabsync.Test"}`}},
		{"a group not provisioned", "io.systemd.UserDatabase.GetGroupRecord", `{"gid":21002,` + svc + `}`, false,
			[]string{`"error":"io.systemd.UserDatabase.NoRecordFound"`}},
		{"memberships of a user", "io.systemd.UserDatabase.GetMemberships", `{"userName":"alice",` + svc + `}`, true,
			[]string{`"groupName":"atlas","userName":"alice"`}},
		{"memberships of a group", "io.systemd.UserDatabase.GetMemberships", `{"groupName":"atlas",` + svc + `}`, true,
			[]string{`"continues":true`, `"userName":"bob"`}},
		{"unknown method", "io.systemd.UserDatabase.Drop", `{}`, false, []string{`"error":"org.varlink.service.MethodNotFound"`}},
		{"bad parameters", "io.systemd.UserDatabase.GetUserRecord", `{"uid":"zero"}`, false, []string{`"error":"org.varlink.service.InvalidParameter"`}},
	} {
		replies := exchange(t, tc.method, tc.params, tc.more)
		if len(replies) != len(tc.want) {
			t.Errorf("%s: %d replies %v, want %d", tc.name, len(replies), replies, len(tc.want))
			continue
		}
		for i, w := range tc.want {
			data, _ := json.Marshal(replies[i])
			if !strings.Contains(string(data), w) {
				t.Errorf("%s: reply %d = %s, want %s", tc.name, i, data, w)
			}
		}
	}
}

// TestOverlongMessage: a message without its NUL within 64 KiB ends the
// connection; the provider goes on serving.
func TestOverlongMessage(t *testing.T) {
	dir := t.TempDir()
	p := testProvider()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Serve(ctx, dir)
	path := filepath.Join(dir, "io.collabsync.Test")
	var conn net.Conn
	var err error
	for range 100 {
		if conn, err = net.Dial("unix", path); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte(strings.Repeat("x", 200<<10)))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Error("the connection stayed open")
	}
	conn.Close()
	if replies := exchange(t, "io.systemd.UserDatabase.GetUserRecord", `{"userName":"alice","service":"io.collabsync.Test"}`, false); len(replies) != 1 {
		t.Errorf("after an overlong message: %v", replies)
	}
}

func FuzzCall(f *testing.F) {
	f.Add([]byte(`{"method":"io.systemd.UserDatabase.GetUserRecord","parameters":{"userName":"alice","service":"io.collabsync.Test"}}`))
	f.Add([]byte(`{"method":"io.systemd.UserDatabase.GetMemberships","parameters":{"service":"io.collabsync.Test"},"more":true}`))
	p := testProvider()
	f.Fuzz(func(t *testing.T, msg []byte) {
		var req request
		if json.Unmarshal(msg, &req) != nil {
			return
		}
		n := 0
		p.call(req, func(r reply) error {
			n++
			if _, err := json.Marshal(r); err != nil {
				t.Fatal(err)
			}
			return nil
		})
		_ = n // no reply at all is NoRecordFound, which the replier writes
	})
}

// TestConnectionsEnd: a connection's goroutines end with it (a lookup per
// getent must not leave one behind for the daemon's lifetime).
func TestConnectionsEnd(t *testing.T) {
	dir := t.TempDir()
	p := testProvider()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Serve(ctx, dir)
	path := filepath.Join(dir, "io.collabsync.Test")
	eventually := func(cond func() bool) bool {
		for range 200 {
			if cond() {
				return true
			}
			time.Sleep(10 * time.Millisecond)
		}
		return false
	}
	if !eventually(func() bool {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
		}
		return err == nil
	}) {
		t.Fatal("no socket")
	}
	time.Sleep(50 * time.Millisecond)
	before := runtime.NumGoroutine()
	for range 200 {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(`{"method":"io.systemd.UserDatabase.GetUserRecord","parameters":{"userName":"alice","service":"io.collabsync.Test"}}` + "\x00"))
		bufio.NewReader(c).ReadBytes(0)
		c.Close()
	}
	if !eventually(func() bool { return runtime.NumGoroutine() <= before+5 }) {
		t.Errorf("goroutines: %d before, %d after 200 connections", before, runtime.NumGoroutine())
	}
}

// TestClientsThatDoNotRead: connections that ask for every user and never
// read their replies are cut off at writeTimeout and capped per uid (the
// rest closed at once), so the provider keeps answering a fresh client and
// its memory does not grow with them; the socket stays. Before, 21,000 of
// them took serve from 21 to 389 MB and then ended it (too many open
// files), removing the socket.
func TestClientsThatDoNotRead(t *testing.T) {
	dir := t.TempDir()
	p := testProvider()
	// Enough users that one enumeration does not fit a socket's buffer.
	var st directory.State
	for i := range 20000 {
		st.Users = append(st.Users, directory.UserState{User: &directory.User{UID: fmt.Sprintf("u%05d", i), UIDNumber: uint32(10000 + i),
			GIDNumber: 100, Home: "/home/x", Shell: "/bin/sh"}, Status: directory.StatusActive})
	}
	p.Set(&st)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- p.Serve(ctx, dir) }()
	path := filepath.Join(dir, "io.collabsync.Test")
	for range 200 {
		if _, err := os.Stat(path); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 500 {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(`{"method":"io.systemd.UserDatabase.GetUserRecord","parameters":{"service":"io.collabsync.Test"},"more":true}` + "\x00"))
		held = append(held, c)
	}
	// Every one accepted (the backlog drains at its own pace under -race).
	for deadline := time.Now().Add(writeTimeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if h := p.Health(); uint64(h.Connections)+h.Refused >= 500 {
			break
		}
	}
	if h := p.Health(); !h.Serving || h.Connections > maxConnsPerUID || h.Refused < 500-maxConnsPerUID {
		t.Errorf("health with 500 clients of one uid that do not read: %+v", h)
	}
	// After the write timeout the stuck ones are gone.
	deadline := time.Now().Add(writeTimeout + 3*time.Second)
	for p.Health().Connections > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := p.Health().Connections; n != 0 {
		t.Errorf("%d connections left past the write timeout", n)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte(`{"method":"io.systemd.UserDatabase.GetUserRecord","parameters":{"userName":"u00007","service":"io.collabsync.Test"}}` + "\x00"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if rep, err := bufio.NewReader(c).ReadBytes(0); err != nil || !strings.Contains(string(rep), `"userName":"u00007"`) {
		t.Errorf("a fresh client: %q, %v", rep, err)
	}
	c.Close()
	select {
	case err := <-served:
		t.Fatalf("Serve ended: %v", err)
	default:
	}
	cancel()
	<-served
	if _, err := os.Stat(path); err == nil {
		t.Error("the socket stayed after the provider ended")
	}
}
