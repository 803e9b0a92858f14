package mailman

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// client speaks Mailman core's REST API 3.1: HTTP Basic with the password
// read from its file on every use (so a rotated secret is picked up), a
// timeout on every request, each request counted by its result.
type client struct {
	base         string // ends in /3.1
	user         string
	passwordFile string
	timeout      time.Duration
	http         *http.Client
	call         func(result string)
}

func newClient(s *Settings, call func(string)) (*client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no certificate in it", s.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &client{base: strings.TrimSuffix(s.URL, "/") + "/3.1", user: s.User, passwordFile: s.PasswordFile,
		timeout: time.Duration(s.Timeout), http: &http.Client{Transport: tr}, call: call}, nil
}

// apiError is an answer other than the one expected.
type apiError struct {
	Method, Path string
	Status       int
	Body         string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.Method, e.Path, e.Status, e.Body)
}

// status returns the HTTP status of an apiError, 0 for anything else.
func status(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// do sends one request; form values go in the body (or, for DELETE with
// a body, also there, as Mailman reads them). out, when not nil, receives
// the decoded JSON of a 2xx answer.
func (c *client) do(ctx context.Context, method, path string, form url.Values, out any) error {
	pw, err := os.ReadFile(c.passwordFile)
	if err != nil {
		return fmt.Errorf("password_file: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	req.SetBasicAuth(c.user, strings.TrimRight(string(pw), "\r\n"))
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.call("error")
		if ctx.Err() == context.DeadlineExceeded {
			return fmt.Errorf("%s %s: no answer within %v", method, path, c.timeout)
		}
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	c.call(fmt.Sprint(resp.StatusCode))
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		msg := strings.TrimSpace(string(data))
		var e struct {
			Description string `json:"description"`
		}
		if json.Unmarshal(data, &e) == nil && e.Description != "" {
			msg = e.Description
		}
		if len(msg) > 300 {
			msg = msg[:300] + "…"
		}
		return &apiError{Method: method, Path: path, Status: resp.StatusCode, Body: msg}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// pageSize is how many entries one page of a collection holds.
const pageSize = 500

// pages walks a paged collection.
func (c *client) pages(ctx context.Context, path string, each func(json.RawMessage) error) error {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	for page := 1; ; page++ {
		var p struct {
			Total   int               `json:"total_size"`
			Entries []json.RawMessage `json:"entries"`
		}
		if err := c.do(ctx, http.MethodGet, fmt.Sprintf("%s%scount=%d&page=%d", path, sep, pageSize, page), nil, &p); err != nil {
			return err
		}
		for _, e := range p.Entries {
			if err := each(e); err != nil {
				return err
			}
		}
		if page*pageSize >= p.Total || len(p.Entries) == 0 {
			return nil
		}
	}
}
