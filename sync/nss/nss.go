// Package nss writes Unix users and groups as passwd and group files in the
// classic colon format that libnss-extrausers reads.
package nss

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/collabsync/collabsync/internal/atomicfile"
	"github.com/collabsync/collabsync/internal/directory"
	"github.com/collabsync/collabsync/sync/engine"
)

// Record kinds, which are also the file names.
const (
	KindPasswd = "passwd"
	KindGroup  = "group"
)

// fields per line of each file.
var fieldCount = map[string]int{KindPasswd: 7, KindGroup: 4}

// Settings configure an nss target instance.
type Settings struct {
	// Dir holds the passwd and group files (libnss-extrausers reads
	// /var/lib/extrausers).
	Dir string `yaml:"dir"`
}

// Validate implements engine.Settings.
func (s *Settings) Validate() []engine.SettingProblem {
	if !filepath.IsAbs(s.Dir) {
		return []engine.SettingProblem{{Key: "dir", Msg: fmt.Sprintf("must be an absolute path, got %q", s.Dir)}}
	}
	return nil
}

// Kind declares the nss kind of target.
func Kind() engine.Kind {
	return engine.NewKind("nss", func() *Settings { return &Settings{Dir: "/var/lib/extrausers"} }, New)
}

// New builds an instance named name.
func New(name string, s *Settings, _ engine.Env) *Target {
	return &Target{InstanceName: name, Dir: s.Dir}
}

// Target is the nss target. It is an engine.Target.
type Target struct {
	// InstanceName is the configured name ("nss" unless the
	// configuration names it).
	InstanceName string
	Dir          string

	// last is the last desired state: its lines are reused for the lines
	// that stay the same (the engine keeps the same records as its known
	// state, so this holds no second copy).
	last []engine.Record
}

var (
	_ engine.Target    = (*Target)(nil)
	_ engine.Patcher   = (*Target)(nil)
	_ engine.Recoverer = (*Target)(nil)
	_ engine.Comparer  = (*Target)(nil)
	_ engine.Settings  = (*Settings)(nil)
)

// Name implements engine.Target.
func (t *Target) Name() string { return t.InstanceName }

// Desired implements engine.Target: a passwd line per active user and
// active production account, a group line per provisioned collaboration
// listing its active members. Records come in (kind, key) order, as the
// engine diffs them without sorting. A line the last desired state had
// is that state's string; the new lines share one allocation per file,
// so a change costs the records' slice and its own lines, not the files'
// content. The two files' lines are made side by side, each into its
// part of the records (at 1M users 0.14 s; 0.18 s on one core).
func (t *Target) Desired(state *directory.State) ([]engine.Record, error) {
	// Collaborations (sorted by name) and users' private groups (sorted
	// by user, most often their name too), merged by name.
	private := privateGroups(state.Users)
	groups := len(private)
	for _, c := range state.Collaborations {
		if c.Provisioned {
			groups++
		}
	}
	recs := make([]engine.Record, groups, groups+len(state.Users)+len(state.ProductionAccounts))
	lastGroups, lastPasswd := splitKinds(t.last)
	g := t.lines(KindGroup, recs[:0:groups], lastGroups, groups)
	p := t.lines(KindPasswd, recs[groups:groups], lastPasswd, cap(recs)-groups)
	done := make(chan struct{})
	go func() {
		defer close(done)
		group := func(name string, gid uint32, members []string) {
			g.add(name, func(b []byte) []byte { return groupLine(b, name, gid, members) })
		}
		for _, c := range state.Collaborations {
			if !c.Provisioned {
				continue
			}
			for len(private) > 0 && private[0].PrivateGroup < c.Name {
				group(private[0].PrivateGroup, private[0].GIDNumber, nil)
				private = private[1:]
			}
			group(c.Name, c.GIDNumber, c.ActiveMembers)
		}
		for _, u := range private {
			group(u.PrivateGroup, u.GIDNumber, nil)
		}
		g.finish()
	}()
	// Users and production accounts, each sorted by name, merged.
	users, prods := state.Users, state.ProductionAccounts
	for len(users) > 0 || len(prods) > 0 {
		if len(prods) == 0 || len(users) > 0 && users[0].UID <= prods[0].Name {
			if u := &users[0]; u.Status == directory.StatusActive {
				p.add(u.UID, func(b []byte) []byte { return userLine(b, u) })
			}
			users = users[1:]
			continue
		}
		if pa := &prods[0]; pa.Active {
			p.add(pa.Name, func(b []byte) []byte { return productionLine(b, pa) })
		}
		prods = prods[1:]
	}
	p.finish()
	<-done
	// Each file's records were made in its part of recs, which holds as
	// many as there can be.
	recs = recs[:groups+len(p.recs)]
	t.last = recs
	return recs, nil
}

// splitKinds splits records in (kind, key) order into the group file's
// and the passwd file's.
func splitKinds(recs []engine.Record) (group, passwd []engine.Record) {
	i, _ := slices.BinarySearchFunc(recs, KindPasswd, func(r engine.Record, kind string) int { return strings.Compare(r.Kind, kind) })
	return recs[:i], recs[i:]
}

// fileLines makes one file's records in key order, reusing the lines of
// the last desired state's records of the file that stay the same.
type fileLines struct {
	kind string
	recs []engine.Record
	last []engine.Record
	// buf holds the line being made; fresh the new lines one after
	// another; added, for each new line, its record and where it lies in
	// fresh (whose strings are made once it has stopped growing).
	buf, fresh []byte
	added      []span
}

type span struct{ rec, start, end int }

// lines starts a file's records in recs (empty, with room for n).
func (t *Target) lines(kind string, recs, last []engine.Record, n int) *fileLines {
	l := &fileLines{kind: kind, recs: recs, last: last}
	if len(last) == 0 {
		// A first run: every line is new, in a buffer of the file's size
		// that neither grows nor is copied to fit (at 100k users both were
		// half of the records' time).
		l.fresh = make([]byte, 0, t.firstSize(kind, n))
		l.added = make([]span, 0, n)
	}
	return l
}

// add makes key's record, its line written by write.
func (l *fileLines) add(key string, write func([]byte) []byte) {
	l.buf = write(l.buf[:0])
	for len(l.last) > 0 && l.last[0].Key < key {
		l.last = l.last[1:]
	}
	if len(l.last) > 0 && l.last[0].Key == key && l.last[0].Value == string(l.buf) {
		l.recs = append(l.recs, l.last[0])
		l.last = l.last[1:]
		return
	}
	l.added = append(l.added, span{len(l.recs), len(l.fresh), len(l.fresh) + len(l.buf)})
	l.fresh = append(l.fresh, l.buf...)
	l.recs = append(l.recs, engine.Record{Kind: l.kind, Key: key})
}

// finish gives the new records their lines.
func (l *fileLines) finish() {
	if cap(l.fresh) > len(l.fresh)+len(l.fresh)/16 {
		l.fresh = append(make([]byte, 0, len(l.fresh)), l.fresh...) // kept as the known state: not a byte more
	}
	// The new values share fresh, which nothing writes again: a string
	// over it rather than a copy, as strings.Builder does.
	all := unsafe.String(unsafe.SliceData(l.fresh), len(l.fresh))
	for _, a := range l.added {
		l.recs[a.rec].Value = all[a.start:a.end]
	}
}

// firstSize is the room a first run's n lines of a file are made in: the
// file's size, which a target in sync holds to the byte (with a newline a
// line more); 80 bytes a line when it is empty or missing, and at most
// 1 KiB a line.
func (t *Target) firstSize(kind string, n int) int {
	size := 0
	if fi, err := os.Stat(filepath.Join(t.Dir, kind)); err == nil && fi.Mode().IsRegular() {
		size = int(min(fi.Size(), 1<<40))
	}
	if size == 0 {
		return 80 * n
	}
	return min(size, 1024*n)
}

// groupLine appends a group line.
func groupLine(buf []byte, name string, gid uint32, members []string) []byte {
	buf = append(buf, name...)
	buf = append(buf, ":x:"...)
	buf = strconv.AppendUint(buf, uint64(gid), 10)
	buf = append(buf, ':')
	for i, m := range members {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, m...)
	}
	return buf
}

// userLine and productionLine append a passwd line.
func userLine(buf []byte, u *directory.UserState) []byte {
	return passwdLine(buf, u.UID, u.UIDNumber, u.GIDNumber, u.Name, u.Home, u.Shell)
}

func productionLine(buf []byte, p *directory.ProductionState) []byte {
	return passwdLine(buf, p.Name, p.UIDNumber, p.GIDNumber, "production account of "+p.Collaboration, p.Home, p.Shell)
}

func passwdLine(buf []byte, name string, uid, gid uint32, gecosName, home, shell string) []byte {
	buf = append(buf, name...)
	buf = append(buf, ":x:"...)
	buf = strconv.AppendUint(buf, uint64(uid), 10)
	buf = append(buf, ':')
	buf = strconv.AppendUint(buf, uint64(gid), 10)
	buf = append(buf, ':')
	buf = append(buf, gecos(gecosName)...)
	buf = append(buf, ':')
	buf = append(buf, home...)
	buf = append(buf, ':')
	return append(buf, shell...)
}

// DesiredSince implements engine.Patcher: the lines of the users,
// collaborations and production accounts that changed between the two
// states (directory.State.ChangedSince). A line depends on its subject
// alone, so a subject unchanged has the same lines; a key a changed
// subject made for from and no changed subject makes for to is gone.
func (t *Target) DesiredSince(from, to *directory.State) ([]engine.Desire, bool, error) {
	ch, ok := to.ChangedSince(from)
	if !ok {
		return nil, false, nil
	}
	// The engine's records are patched from here on: the last whole
	// desired state is no longer what this target holds.
	t.last = nil
	type key struct{ kind, name string }
	made := map[key]bool{} // what the changed subjects made for from
	var out []engine.Desire
	lines := func(st *directory.State, emit func(kind, name string, line func([]byte) []byte)) {
		for _, i := range ch.Users {
			u := &st.Users[i]
			if u.Status == directory.StatusActive {
				emit(KindPasswd, u.UID, func(b []byte) []byte { return userLine(b, u) })
			}
			if u.OwnGroup {
				emit(KindGroup, u.PrivateGroup, func(b []byte) []byte { return groupLine(b, u.PrivateGroup, u.GIDNumber, nil) })
			}
		}
		for _, i := range ch.Collaborations {
			if c := &st.Collaborations[i]; c.Provisioned {
				emit(KindGroup, c.Name, func(b []byte) []byte { return groupLine(b, c.Name, c.GIDNumber, c.ActiveMembers) })
			}
		}
		for _, i := range ch.ProductionAccounts {
			if p := &st.ProductionAccounts[i]; p.Active {
				emit(KindPasswd, p.Name, func(b []byte) []byte { return productionLine(b, p) })
			}
		}
	}
	lines(from, func(kind, name string, _ func([]byte) []byte) { made[key{kind, name}] = true })
	wanted := map[key]bool{}
	lines(to, func(kind, name string, line func([]byte) []byte) {
		k := key{kind, name}
		wanted[k] = true
		out = append(out, engine.Desire{Record: engine.Record{Kind: kind, Key: name, Value: string(line(nil))}, New: !made[k]})
	})
	for k := range made {
		if !wanted[k] {
			out = append(out, engine.Desire{Record: engine.Record{Kind: k.kind, Key: k.name}, Gone: true})
		}
	}
	return out, true, nil
}

// privateGroups are the users whose private group is provisioned, in
// the groups' name order.
func privateGroups(users []directory.UserState) []directory.UserState {
	var out []directory.UserState
	for _, u := range users {
		if u.OwnGroup {
			out = append(out, u)
		}
	}
	byGroup := func(a, b directory.UserState) int { return strings.Compare(a.PrivateGroup, b.PrivateGroup) }
	if !slices.IsSortedFunc(out, byGroup) {
		slices.SortFunc(out, byGroup)
	}
	return out
}

// gecos keeps a display name from breaking the colon format.
func gecos(name string) string {
	return strings.Map(func(r rune) rune {
		if r == ':' || r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, name)
}

// Current implements engine.Target by reading the files; a missing file
// holds nothing. Group comes first: records in (kind, key) order are
// diffed without a sorted copy.
func (t *Target) Current(ctx context.Context) ([]engine.Record, error) {
	var recs []engine.Record
	for _, kind := range []string{KindGroup, KindPasswd} {
		f, err := os.Open(filepath.Join(t.Dir, kind))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		r, err := parse(filepath.Join(t.Dir, kind), kind, f)
		f.Close()
		if err != nil {
			return nil, err
		}
		recs = append(recs, r...)
	}
	return recs, nil
}

// Holds implements engine.Comparer: the files are read, streamed, beside
// the lines Apply writes for recs (a missing file holds no records). A
// file that differs in any byte (a comment, a blank line, a record out of
// order) is not held: the engine then reads it whole.
func (t *Target) Holds(ctx context.Context, recs iter.Seq[engine.Record]) (bool, error) {
	c := &comparison{dir: t.Dir, kinds: []string{KindGroup, KindPasswd}, buf: make([]byte, 64<<10)}
	defer c.close()
	for r := range recs {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		for c.r == nil || c.kind != r.Kind {
			if len(c.kinds) == 0 {
				return false, nil // a kind out of order, or of no file
			}
			if ok, err := c.end(); !ok || err != nil {
				return false, err
			}
			if err := c.open(); err != nil {
				return false, err
			}
		}
		if ok, err := c.line(r.Value); !ok || err != nil {
			return false, err
		}
	}
	for { // the files of no record, after the last, hold none
		if ok, err := c.end(); !ok || err != nil {
			return false, err
		}
		if len(c.kinds) == 0 {
			return true, nil
		}
		if err := c.open(); err != nil {
			return false, err
		}
	}
}

// comparison walks the files in kind order beside the records.
type comparison struct {
	dir   string
	kinds []string // the files still to open, in order
	kind  string   // the open file's, when r is set
	f     *os.File
	r     *bufio.Reader
	buf   []byte
}

// end closes the open file, if any; false when it holds more.
func (c *comparison) end() (bool, error) {
	if c.r == nil {
		return true, nil
	}
	_, err := c.r.ReadByte()
	c.close()
	if err == nil {
		return false, nil
	}
	return err == io.EOF, readErr(err)
}

// open opens the next file; a missing one holds nothing.
func (c *comparison) open() error {
	c.kind, c.kinds = c.kinds[0], c.kinds[1:]
	f, err := os.Open(filepath.Join(c.dir, c.kind))
	switch {
	case errors.Is(err, os.ErrNotExist):
		c.r = bufio.NewReader(strings.NewReader(""))
	case err != nil:
		return err
	default:
		c.f, c.r = f, bufio.NewReaderSize(f, len(c.buf))
	}
	return nil
}

// line says whether the open file goes on with line and a newline.
func (c *comparison) line(line string) (bool, error) {
	for len(line) > 0 {
		n := min(len(line), len(c.buf))
		if _, err := io.ReadFull(c.r, c.buf[:n]); err != nil {
			return false, readErr(err)
		}
		if string(c.buf[:n]) != line[:n] {
			return false, nil
		}
		line = line[n:]
	}
	b, err := c.r.ReadByte()
	if err != nil {
		return false, readErr(err)
	}
	return b == '\n', nil
}

func (c *comparison) close() {
	if c.f != nil {
		c.f.Close()
	}
	c.f, c.r = nil, nil
}

// readErr is a read's error, nil for a file that ended: it differs.
func readErr(err error) error {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	return err
}

// parse reads a passwd or group file; name is used in errors.
func parse(name, kind string, r io.Reader) ([]engine.Record, error) {
	var recs []engine.Record
	err := scan(name, kind, r, func(key, line []byte) {
		recs = append(recs, engine.Record{Kind: kind, Key: string(key), Value: string(line)})
	})
	if err != nil {
		return nil, err
	}
	return recs, nil
}

// scan checks every line of a file and passes each record's key and line
// to fn (they are valid during the call only).
func scan(name, kind string, r io.Reader, fn func(key, line []byte)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20) // large groups make long lines
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	colon := []byte{':'}
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if c := bytes.Count(line, colon) + 1; c != fieldCount[kind] {
			return fmt.Errorf("%s:%d: %d fields, want %d", name, n, c, fieldCount[kind])
		}
		key, rest, _ := bytes.Cut(line, colon)
		_, rest, _ = bytes.Cut(rest, colon) // the password field
		id, _, _ := bytes.Cut(rest, colon)
		if _, err := strconv.ParseUint(string(id), 10, 32); err != nil {
			return fmt.Errorf("%s:%d: id %q is not a number", name, n, id)
		}
		fn(key, line)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s:%d: %w", name, n+1, err)
	}
	return nil
}

// Recover implements engine.Recoverer: it removes the temporary files a
// killed apply left in the directory.
func (t *Target) Recover(ctx context.Context) error {
	for _, kind := range []string{KindPasswd, KindGroup} {
		if err := atomicfile.RemoveStale(filepath.Join(t.Dir, kind)); err != nil {
			return err
		}
	}
	return nil
}

// Apply implements engine.Target: each file the plan changes is rewritten
// whole from the desired state, streamed once into a temporary file that
// is read back, verified and renamed over it; a file the plan does not
// touch is not even read.
func (t *Target) Apply(ctx context.Context, p *engine.Plan) error {
	if err := os.MkdirAll(t.Dir, 0o755); err != nil {
		return err
	}
	touched := map[string]bool{}
	for _, c := range p.Changes {
		touched[c.Kind] = true
	}
	for _, kind := range []string{KindPasswd, KindGroup} {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !touched[kind] {
			continue
		}
		want := 0 // the lines written, which the file must parse back to
		// The file is streamed from the records, never held whole; the
		// records are in kind order, so the walk ends after the kind's.
		write := func(w io.Writer) error {
			for r := range p.Desired.All() {
				if r.Kind > kind {
					break
				}
				if r.Kind != kind {
					continue
				}
				if _, err := io.WriteString(w, r.Value); err != nil {
					return err
				}
				if _, err := io.WriteString(w, "\n"); err != nil {
					return err
				}
				want++
			}
			return nil
		}
		path := filepath.Join(t.Dir, kind)
		verify := func(r io.Reader) error {
			got := 0
			err := scan(path, kind, r, func(_, _ []byte) { got++ })
			if err == nil && got != want {
				err = fmt.Errorf("parsed %d records, want %d", got, want)
			}
			return err
		}
		if err := atomicfile.Stream(path, 0o644, write, verify); err != nil {
			return err
		}
	}
	return nil
}
