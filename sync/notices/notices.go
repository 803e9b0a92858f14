// Package notices tells people by e-mail what the directory's changes
// mean for them: an account that became active or was suspended, a
// collaboration's review coming due or lapsed, an external user waiting
// for a validator, a production account created or removed.
//
// It is a target like the others: its desired state is the notices the
// directory makes true today (one per fact, subject, period and
// recipient), its known state a ledger of the notices sent, and a plan's
// additions are the mails to send — one mail per recipient, gathering all
// of theirs. So guards, maintenance windows, plan and retries apply as to
// every target, and a notice is sent once: the ledger records each mail
// when the relay has accepted it. The first run on a directory (no ledger
// yet) sends nothing: what is already true is recorded as told.
package notices

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/internal/duration"
	"github.com/collabsync/collabsync/internal/maintenance"
	"github.com/collabsync/collabsync/internal/secret"
	"github.com/collabsync/collabsync/sync/engine"
)

// TLS modes of the SMTP connection.
const (
	TLSStartTLS = "starttls" // STARTTLS required, the certificate verified
	TLSImplicit = "tls"      // TLS from the first byte (port 465)
	TLSNone     = "none"     // plain text: a relay on this host only
)

// SMTP is how the site's relay is reached.
type SMTP struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	TLS  string `yaml:"tls"`
	// CAFile verifies the relay's certificate instead of the system's
	// roots.
	CAFile   string `yaml:"ca_file"`
	Username string `yaml:"username"`
	// PasswordFile holds the password for Username (never in the
	// configuration itself).
	PasswordFile string            `yaml:"password_file"`
	Timeout      duration.Duration `yaml:"timeout"`
}

// Settings configure a notices target instance.
type Settings struct {
	SMTP SMTP `yaml:"smtp"`
	// From is the sender's address; Site names the centre in the mails.
	From string `yaml:"from"`
	Site string `yaml:"site"`
	// Templates is a directory whose files replace the default templates
	// of the same name (mail.tmpl, account-active.tmpl ...); "" uses the
	// defaults. One language per directory.
	Templates string `yaml:"templates"`
	// ReviewDays are the days before a review's date its contacts are
	// told, once at each.
	ReviewDays []int `yaml:"review_days"`
	// OptOut is the opt-out value (the users' opt-out attribute) that
	// keeps a person from every notice.
	OptOut string `yaml:"opt_out"`
	// PerMinute limits the mails sent per minute; 0 is no limit.
	PerMinute int `yaml:"per_minute"`
	// AllocationThresholds are the percentages of an allocation whose
	// use is told to the collaboration's computing contacts.
	AllocationThresholds []int `yaml:"allocation_thresholds"`
	// Announce tells an address (the all-users list) of maintenance
	// windows ahead.
	Announce Announce `yaml:"announce"`
}

// Announce is where and when maintenance windows are announced.
type Announce struct {
	// To is the address told; "" announces nothing.
	To string `yaml:"to"`
	// The windows: an iCalendar file and fixed windows, and the services
	// whose events count (empty: every event), as a target's maintenance.
	maintenance.Config `yaml:",inline"`
	// DaysAhead is how many days before a window it is announced; a
	// reminder goes the day before.
	DaysAhead int `yaml:"days_ahead"`
}

// Validate implements engine.Settings.
func (s *Settings) Validate() []engine.SettingProblem {
	var probs []engine.SettingProblem
	bad := func(key, format string, args ...any) {
		probs = append(probs, engine.SettingProblem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if s.SMTP.Host == "" {
		bad("smtp.host", "is required")
	}
	if s.SMTP.Port < 1 || s.SMTP.Port > 65535 {
		bad("smtp.port", "want 1-65535, got %d", s.SMTP.Port)
	}
	switch s.SMTP.TLS {
	case TLSStartTLS, TLSImplicit, TLSNone:
	default:
		bad("smtp.tls", "want starttls, tls or none, got %q", s.SMTP.TLS)
	}
	if s.SMTP.TLS == TLSNone && s.SMTP.Username != "" {
		bad("smtp.tls", "none would send the password in the clear: use starttls or tls with a username")
	}
	if s.SMTP.Username != "" {
		if s.SMTP.PasswordFile == "" {
			bad("smtp.password_file", "is required with smtp.username")
		} else if _, err := secret.Read(s.SMTP.PasswordFile); err != nil {
			bad("smtp.password_file", "%v", err)
		}
	}
	if s.SMTP.CAFile != "" {
		if _, err := os.ReadFile(s.SMTP.CAFile); err != nil {
			bad("smtp.ca_file", "%v", err)
		}
	}
	if s.SMTP.Timeout <= 0 {
		bad("smtp.timeout", "must be positive")
	}
	if a, err := mail.ParseAddress(s.From); err != nil || a.Name != "" {
		bad("from", "want an address (user@example.org), got %q", s.From)
	}
	if ts, err := loadTemplates(s.Templates); err != nil {
		bad("templates", "%v", err)
	} else if err := ts.check(); err != nil {
		bad("templates", "%v", err)
	}
	for _, d := range s.ReviewDays {
		if d < 0 {
			bad("review_days", "a day count must be 0 or more, got %d", d)
		}
	}
	if s.OptOut == "" {
		bad("opt_out", "must not be empty")
	}
	if s.Announce.To != "" {
		if a, err := mail.ParseAddress(s.Announce.To); err != nil || a.Name != "" {
			bad("announce.to", "want an address (hpc-users@example.org), got %q", s.Announce.To)
		}
		if s.Announce.Empty() {
			bad("announce", "a calendar or windows are needed to announce")
		}
		if s.Announce.Calendar != "" {
			if _, err := maintenance.Parse(s.Announce.Calendar); err != nil {
				bad("announce.calendar", "%v", err)
			}
		}
		if s.Announce.DaysAhead < 2 {
			bad("announce.days_ahead", "want 2 or more (the day before is the reminder), got %d", s.Announce.DaysAhead)
		}
	}
	for _, th := range s.AllocationThresholds {
		if th <= 0 {
			bad("allocation_thresholds", "a percentage must be more than 0, got %d", th)
		}
	}
	if s.PerMinute < 0 {
		bad("per_minute", "must be 0 (no limit) or more, got %d", s.PerMinute)
	}
	return probs
}

// Kind declares the notices kind of target.
func Kind() engine.Kind {
	return engine.NewKind("notices", func() *Settings {
		return &Settings{SMTP: SMTP{Host: "localhost", Port: 25, TLS: TLSStartTLS, Timeout: duration.Duration(30 * time.Second)},
			Site: "collabsync", ReviewDays: []int{30, 14, 7}, OptOut: "notices", PerMinute: 60,
			AllocationThresholds: []int{80, 100}, Announce: Announce{DaysAhead: 10}}
	}, New)
}

// New builds an instance named name.
func New(name string, s *Settings, env engine.Env) *Target {
	env = env.Filled()
	tmpl, _ := loadTemplates(s.Templates) // validated
	t := &Target{name: name, s: *s, log: env.Log, call: env.Call, now: time.Now, tmpl: tmpl}
	if s.Announce.To != "" {
		t.schedule = maintenance.New(s.Announce.Config)
	}
	return t
}

// Target is the notices target.
type Target struct {
	name string
	s    Settings
	log  *slog.Logger
	call func(string)
	now  func() time.Time
	tmpl templates

	// schedule is the windows announced (nil: none).
	schedule *maintenance.Schedule

	mu       sync.Mutex
	baseline bool // no ledger yet: the next apply records, sends nothing
	// windows are the windows ahead as Current last read them.
	windows []maintenance.Window
	// usage reads the allocations' use (nil: no accounting); uses are
	// what Current last read.
	usage UsageFunc
	uses  []Use
	// reports make the monthly reports (nil: none); reported are the
	// collaborations Current found using anything in month.
	reports  Reports
	reported []string
	month    string
	// state is the one Desired last planned from.
	state *directory.State
	// db is the state store, which holds the ledger.
	db *sql.DB
}

// SetStateStore gives the target the state store its ledger lives in;
// without it the target cannot run.
func (t *Target) SetStateStore(db *sql.DB) {
	t.mu.Lock()
	t.db = db
	t.mu.Unlock()
}

func (t *Target) ledger() (ledger, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.db == nil {
		return ledger{}, errors.New("the notices ledger needs the state store, which this command does not open")
	}
	return ledger{db: t.db, target: t.name}, nil
}

// Reports are the collaborations' monthly usage reports.
type Reports interface {
	// Used returns the collaborations that used anything in month
	// (YYYY-MM).
	Used(ctx context.Context, month string) ([]string, error)
	// Files returns a collaboration's report of month, to attach.
	Files(ctx context.Context, collaboration, month string) ([]File, error)
}

// File is an attachment.
type File struct {
	Name, ContentType string
	Data              []byte
}

// SetReports gives the target the monthly usage reports; without them
// none is sent.
func (t *Target) SetReports(r Reports) {
	t.mu.Lock()
	t.reports = r
	t.mu.Unlock()
}

// UsageFunc returns each collaboration's use of its allocations in the
// period holding at.
type UsageFunc func(ctx context.Context, at time.Time) ([]Use, error)

// SetUsage gives the target the accounting's use of the allocations;
// without it no allocation notice is sent.
func (t *Target) SetUsage(f UsageFunc) {
	t.mu.Lock()
	t.usage = f
	t.mu.Unlock()
}

var (
	_ engine.Target   = (*Target)(nil)
	_ engine.Settings = (*Settings)(nil)
	_ engine.Noter    = (*Target)(nil)
)

// Name implements engine.Target.
func (t *Target) Name() string { return t.name }

// Desired implements engine.Target: the notices the state makes true
// today.
func (t *Target) Desired(state *directory.State) ([]engine.Record, error) {
	today := t.now().UTC().Truncate(24 * time.Hour)
	recs := make([]engine.Record, 0, len(state.Users)+len(state.Collaborations))
	facts(state, today, t.s.ReviewDays, t.s.OptOut, func(n Notice) { recs = append(recs, n.record()) })
	t.mu.Lock()
	t.state = state // light notices are made whole from it when sent
	var ns []Notice
	ns = append(ns, announcements(t.windows, t.now(), t.s.Announce.DaysAhead, t.s.Announce.To)...)
	ns = append(ns, allocationNotices(state, t.uses, t.s.AllocationThresholds, t.s.OptOut)...)
	ns = append(ns, reportNotices(state, t.reported, t.month, t.s.OptOut)...)
	t.mu.Unlock()
	for _, n := range ns {
		recs = append(recs, n.record())
	}
	return recs, nil
}

// Current implements engine.Target: the ledger of notices sent (none
// before the first run, which is then a baseline). It reads the windows
// to announce too, for Desired.
func (t *Target) Current(ctx context.Context) ([]engine.Record, error) {
	var windows []maintenance.Window
	if t.schedule != nil {
		now := t.now()
		var err error
		if windows, err = t.schedule.Windows(now, now.AddDate(0, 0, t.s.Announce.DaysAhead+1)); err != nil {
			return nil, fmt.Errorf("announce: %w", err)
		}
	}
	t.mu.Lock()
	usage, reports := t.usage, t.reports
	t.mu.Unlock()
	var uses []Use
	if usage != nil {
		var err error
		if uses, err = usage(ctx, t.now()); err != nil {
			return nil, fmt.Errorf("allocations' use: %w", err)
		}
	}
	month := lastMonth(t.now())
	var reported []string
	if reports != nil {
		var err error
		if reported, err = reports.Used(ctx, month); err != nil {
			return nil, fmt.Errorf("usage reports: %w", err)
		}
	}
	l, err := t.ledger()
	if err != nil {
		return nil, err
	}
	recs, ok, err := l.read(ctx)
	t.mu.Lock()
	t.baseline = err == nil && !ok
	t.windows, t.uses, t.reported, t.month = windows, uses, reported, month
	t.mu.Unlock()
	return recs, err
}

// Notes implements engine.Noter: a baseline run says it sends nothing.
func (t *Target) Notes() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.baseline {
		return []string{"first run (no ledger yet): the notices already true are recorded as told; none is sent"}
	}
	return nil
}

// outgoing is one recipient's mail: the notices it tells, and what the
// ledger records once it is sent.
type outgoing struct {
	to      string
	items   []Notice
	records []engine.Change
}

// Apply implements engine.Target: the plan's additions are mailed, one
// mail per recipient; each mail is recorded in the ledger as soon as the
// relay accepted it. A deletion is recorded without a mail, except the
// end of a production account, which its managers are told of.
func (t *Target) Apply(ctx context.Context, p *engine.Plan) error {
	l, err := t.ledger()
	if err != nil {
		return err
	}
	begun, err := l.begun(ctx)
	if err != nil {
		return err
	}
	if !begun {
		if err := l.write(ctx, p.Desired.Slice(), nil, true, t.now()); err != nil {
			return err
		}
		t.log.Info("first run: notices already true recorded as told, none sent", "notices", p.Desired.Len())
		return nil
	}
	mails := map[string]*outgoing{}
	var put []engine.Record
	var del []string
	for _, c := range p.Changes {
		var n Notice
		switch c.Op {
		case engine.OpModify:
			put = append(put, engine.Record{Kind: c.Kind, Key: c.Key, Value: c.New})
			continue
		case engine.OpDelete:
			if err := json.Unmarshal([]byte(c.Old), &n); err != nil || n.Fact != ProductionCreated {
				del = append(del, c.Key)
				continue
			}
			n.Fact = ProductionRemoved
		case engine.OpAdd:
			if c.New == "" {
				t.mu.Lock()
				var ok bool
				n, ok = lightNotice(t.state, c.Key)
				t.mu.Unlock()
				if !ok {
					return fmt.Errorf("notice %s: not in the state it was planned from", c.Key)
				}
			} else if err := json.Unmarshal([]byte(c.New), &n); err != nil {
				return fmt.Errorf("notice %s: %w", c.Key, err)
			}
		}
		m := mails[n.Mail]
		if m == nil {
			m = &outgoing{to: n.Mail}
			mails[n.Mail] = m
		}
		m.items = append(m.items, n)
		m.records = append(m.records, c)
	}
	if len(put) > 0 || len(del) > 0 {
		if err := l.write(ctx, put, del, false, t.now()); err != nil {
			return err
		}
	}
	if len(mails) == 0 {
		return nil
	}
	order := make([]string, 0, len(mails))
	for to := range mails {
		order = append(order, to)
	}
	slices.Sort(order)
	client, err := t.dial(ctx)
	if err != nil {
		t.call("error")
		return fmt.Errorf("smtp %s:%d: %w", t.s.SMTP.Host, t.s.SMTP.Port, err)
	}
	defer client.Close()
	var errs []error
	sent := 0
	for i, to := range order {
		if i > 0 && t.s.PerMinute > 0 {
			select {
			case <-ctx.Done():
				return errors.Join(append(errs, ctx.Err())...)
			case <-time.After(time.Minute / time.Duration(t.s.PerMinute)):
			}
		}
		m := mails[to]
		msg, err := t.message(ctx, m)
		if err != nil {
			return err // a template's fault: every mail would fail alike
		}
		if err := client.Send(msg); err != nil {
			t.call("error")
			errs = append(errs, fmt.Errorf("mail to %s (%d notices): %w", to, len(m.items), err))
			continue
		}
		t.call("sent")
		sent++
		put, del = put[:0], del[:0]
		for _, c := range m.records {
			if c.Op == engine.OpDelete {
				del = append(del, c.Key)
			} else {
				put = append(put, engine.Record{Kind: c.Kind, Key: c.Key, Value: c.New})
			}
		}
		if err := l.write(ctx, put, del, false, t.now()); err != nil {
			// Sent but not recorded: stop before more could be sent twice.
			return fmt.Errorf("mail to %s sent, but the ledger was not written: %w", to, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d mails sent: %w", sent, len(order), errors.Join(errs...))
	}
	return nil
}

// message renders one recipient's mail. Its Message-ID is derived from
// the notices it tells, so a mail sent again after a crash between the
// relay's acceptance and the ledger's write is recognisably the same.
func (t *Target) message(ctx context.Context, m *outgoing) (*gomail.Msg, error) {
	slices.SortFunc(m.items, func(a, b Notice) int { return strings.Compare(a.Key(), b.Key()) })
	r, err := t.tmpl.compose(t.s.Site, t.s.OptOut, m.items)
	if err != nil {
		return nil, err
	}
	msg := gomail.NewMsg()
	if err := msg.From(t.s.From); err != nil {
		return nil, err
	}
	if err := msg.To(m.to); err != nil {
		return nil, fmt.Errorf("recipient %q: %w", m.to, err)
	}
	msg.Subject(r.Subject)
	msg.SetBodyString(gomail.TypeTextPlain, r.Body)
	for _, n := range m.items {
		if n.Fact != UsageReport {
			continue
		}
		t.mu.Lock()
		reports := t.reports
		t.mu.Unlock()
		if reports == nil {
			continue
		}
		files, err := reports.Files(ctx, n.Subject, n.Period)
		if err != nil {
			return nil, fmt.Errorf("the %s report of %s: %w", n.Period, n.Subject, err)
		}
		for _, f := range files {
			if err := msg.AttachReader(f.Name, bytes.NewReader(f.Data), gomail.WithFileContentType(gomail.ContentType(f.ContentType))); err != nil {
				return nil, fmt.Errorf("attach %s: %w", f.Name, err)
			}
		}
	}
	msg.SetDate()
	h := sha256.New()
	h.Write([]byte(m.to))
	for _, n := range m.items {
		h.Write([]byte{0})
		h.Write([]byte(string(n.Fact) + "/" + n.Key()))
	}
	_, domain, _ := strings.Cut(t.s.From, "@")
	msg.SetMessageIDWithValue(hex.EncodeToString(h.Sum(nil))[:32] + "@" + domain)
	msg.SetGenHeader("Auto-Submitted", "auto-generated")
	msg.SetBulk()
	return msg, nil
}

// dial connects to the relay as the settings say.
func (t *Target) dial(ctx context.Context) (*gomail.Client, error) {
	s := t.s.SMTP
	opts := []gomail.Option{gomail.WithPort(s.Port), gomail.WithTimeout(time.Duration(s.Timeout))}
	tc := &tls.Config{ServerName: s.Host, MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no certificate", s.CAFile)
		}
	}
	switch s.TLS {
	case TLSStartTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory), gomail.WithTLSConfig(tc))
	case TLSImplicit:
		opts = append(opts, gomail.WithSSL(), gomail.WithTLSConfig(tc))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if s.Username != "" {
		pw, err := secret.Read(s.PasswordFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthPlain), gomail.WithUsername(s.Username), gomail.WithPassword(pw))
	}
	c, err := gomail.NewClient(s.Host, opts...)
	if err != nil {
		return nil, err
	}
	if err := c.DialWithContext(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

func sorted(s []string) []string { slices.Sort(s); return s }
