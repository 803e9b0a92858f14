// Package mailman runs a throwaway GNU Mailman 3 core for tests: its REST
// API on loopback, SQLite under one directory, no MTA (the recipe in
// ../shared/COMPONENTS.md). It also speaks just enough of the REST API
// for tests to set up and check lists.
package mailman

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/collabsync/collabsync/internal/testharness"
)

// Server is a running Mailman core.
type Server struct {
	// URL is the REST API's root (without the version).
	URL          string
	User         string
	Password     string
	PasswordFile string
	Dir          string
	config       string
}

// StartT starts Mailman for a test and stops it when the test ends.
// Without Mailman it skips, or fails when CI is set.
func StartT(t testing.TB) *Server {
	t.Helper()
	testharness.Require(t, "mailman")
	testharness.RequireRoot(t) // mailman refuses root without --run-as-root; the tests run as root
	s, err := Start(t.TempDir())
	if err != nil {
		t.Fatalf("start mailman: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop mailman: %v", err)
		}
	})
	return s
}

// Start writes a configuration in dir and starts Mailman.
func Start(dir string) (*Server, error) {
	ports, err := testharness.FreePorts(2)
	if err != nil {
		return nil, err
	}
	rest, lmtp := ports[0], ports[1]
	s := &Server{URL: fmt.Sprintf("http://127.0.0.1:%d", rest), User: "restadmin", Password: "rest-secret-" + strconv.Itoa(rest),
		PasswordFile: filepath.Join(dir, "restpw"), Dir: dir, config: filepath.Join(dir, "mailman.cfg")}
	if err := os.WriteFile(s.PasswordFile, []byte(s.Password+"\n"), 0o600); err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `[mailman]
layout: tmp
site_owner: admin@example.org

[paths.tmp]
var_dir: %[1]s/var
bin_dir: /usr/lib/mailman3/bin

[database]
class: mailman.database.sqlite.SQLiteDatabase
url: sqlite:///%[1]s/var/data/mailman.db

[webservice]
hostname: 127.0.0.1
port: %[2]d
admin_user: %[3]s
admin_pass: %[4]s
api_version: 3.1

[mta]
incoming: mailman.mta.null.NullMTA
smtp_port: 9
lmtp_port: %[5]d
`, dir, rest, s.User, s.Password, lmtp)
	for _, r := range []string{"lmtp", "nntp", "archive", "out", "retry", "bounces", "digest"} {
		fmt.Fprintf(&b, "\n[runner.%s]\nstart: no\n", r)
	}
	if err := os.WriteFile(s.config, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	return s, s.Start()
}

// Start starts (or restarts) Mailman on its configuration and waits until
// the REST API answers.
func (s *Server) Start() error {
	log, err := os.OpenFile(filepath.Join(s.Dir, "mailman.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	// Output to a file: the master keeps a pipe open otherwise.
	cmd := exec.Command("mailman", "-C", s.config, "--run-as-root", "start")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mailman start: %v: %s", err, s.Log())
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := s.Get(context.Background(), "/3.1/system/versions"); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("mailman's REST API did not answer within 60 s: %s", s.Log())
}

// Stop stops Mailman and waits until its master and runners are gone.
func (s *Server) Stop() error {
	data, err := os.ReadFile(filepath.Join(s.Dir, "var", "master.pid"))
	if err != nil {
		return nil // not running
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return fmt.Errorf("master.pid: %w", err)
	}
	exec.Command("mailman", "-C", s.config, "--run-as-root", "stop").Run()
	// The master leads its own process group, runners included.
	return testharness.StopGroup(pid, 20*time.Second)
}

// Log is the end of Mailman's own logs, for failure messages.
func (s *Server) Log() string {
	var b strings.Builder
	for _, f := range []string{"mailman.out", "var/logs/mailman.log"} {
		data, _ := os.ReadFile(filepath.Join(s.Dir, f))
		b.Write(data)
	}
	return testharness.Tail(b.String())
}

// Do sends a request with form values (nil for none) and returns the body
// of a 2xx answer, or an error with the status and body.
func (s *Server) Do(ctx context.Context, method, path string, form url.Values) ([]byte, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, body)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(s.User, s.Password)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return data, &StatusError{Code: resp.StatusCode,
			msg: fmt.Sprintf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))}
	}
	return data, nil
}

// StatusError is an answer other than 2xx.
type StatusError struct {
	Code int
	msg  string
}

func (e *StatusError) Error() string { return e.msg }

// Get is Do with GET.
//
// A GET that meets a 5xx is tried again a few times: Mailman core answers
// a roster read that races a concurrent unsubscription with a 500 (seen in
// CI while serve removed a member), and a test observing Mailman must not
// fail on that.
func (s *Server) Get(ctx context.Context, path string) ([]byte, error) {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var data []byte
		data, err = s.Do(ctx, http.MethodGet, path, nil)
		if se := (*StatusError)(nil); !errors.As(err, &se) || se.Code/100 != 5 {
			return data, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil, err
}

// CreateList creates a list (and its domain when missing), as an
// operator would by hand.
func (s *Server) CreateList(ctx context.Context, fqdn string) error {
	_, domain, _ := strings.Cut(fqdn, "@")
	if _, err := s.Get(ctx, "/3.1/domains/"+domain); err != nil {
		if _, err := s.Do(ctx, http.MethodPost, "/3.1/domains", url.Values{"mail_host": {domain}}); err != nil {
			return err
		}
	}
	_, err := s.Do(ctx, http.MethodPost, "/3.1/lists", url.Values{"fqdn_listname": {fqdn}})
	return err
}

// Subscribe subscribes an address without confirmation.
func (s *Server) Subscribe(ctx context.Context, listID, email string) error {
	_, err := s.Do(ctx, http.MethodPost, "/3.1/members", url.Values{"list_id": {listID}, "subscriber": {email},
		"pre_verified": {"true"}, "pre_confirmed": {"true"}, "pre_approved": {"true"}})
	return err
}

// Lists returns the list ids of every list, sorted.
func (s *Server) Lists(ctx context.Context) ([]string, error) {
	var ids []string
	err := s.pages(ctx, "/3.1/lists", func(raw json.RawMessage) error {
		var l struct {
			ListID string `json:"list_id"`
		}
		err := json.Unmarshal(raw, &l)
		ids = append(ids, l.ListID)
		return err
	})
	sort.Strings(ids)
	return ids, err
}

// Members returns a list's member addresses, lower-cased and sorted.
func (s *Server) Members(ctx context.Context, listID string) ([]string, error) {
	var emails []string
	err := s.pages(ctx, "/3.1/lists/"+listID+"/roster/member", func(raw json.RawMessage) error {
		var m struct {
			Email string `json:"email"`
		}
		err := json.Unmarshal(raw, &m)
		emails = append(emails, strings.ToLower(m.Email))
		return err
	})
	sort.Strings(emails)
	return emails, err
}

func (s *Server) pages(ctx context.Context, path string, each func(json.RawMessage) error) error {
	for page := 1; ; page++ {
		data, err := s.Get(ctx, fmt.Sprintf("%s?count=200&page=%d", path, page))
		if err != nil {
			return err
		}
		var p struct {
			Total   int               `json:"total_size"`
			Entries []json.RawMessage `json:"entries"`
		}
		if err := json.Unmarshal(data, &p); err != nil {
			return err
		}
		for _, e := range p.Entries {
			if err := each(e); err != nil {
				return err
			}
		}
		if page*200 >= p.Total {
			return nil
		}
	}
}
