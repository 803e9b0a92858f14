package ldapx

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Journal keeps a model across restarts (the state store): its entries as
// received and each stream's cookie, saved together so that a cookie never
// runs ahead of the entries it covers.
type Journal interface {
	LoadModel(ctx context.Context, digest string, each func(stream, key, dn string, attrs []byte) error) (map[string][]byte, error)
	SaveModel(ctx context.Context, ops func(yield func(stream, key, dn string, attrs []byte) error) error, cookies map[string][]byte) error
}

// journalOp is one change waiting for the journal: an entry as received,
// or its deletion (attrs nil).
type journalOp struct {
	stream, key, dn string
	attrs           []byte
}

// journalKey names an entry in the journal.
type journalKey struct {
	stream StreamName
	key    string
}

// Load restores the model a journal saved under the same searches and
// mappings, and keeps saving to it from now on (Persist writes). The
// streams then resume from the saved cookies: after a restart only what
// changed meanwhile is read. It returns how many entries it restored.
// The saved entries are decoded and mapped on a goroutine of their own
// while the journal is read (at 1M users each half was ≈5 s of CPU).
func (m *Model) Load(ctx context.Context, j Journal) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.journal = j
	type saved struct {
		s          StreamName
		hexKey, dn string
		attrs      []byte
	}
	const batch = 512
	batches := make(chan []saved, 4)
	mapped := make(chan error, 1)
	var failed atomic.Bool
	n := 0
	go func() {
		var err error
		for b := range batches {
			for _, e := range b {
				if err != nil {
					break // drained: the reader stops at the next entry
				}
				if err = m.restore(e.s, e.hexKey, e.dn, e.attrs); err != nil {
					failed.Store(true)
				}
				n++
			}
		}
		mapped <- err
	}()
	var cur []saved
	cookies, err := j.LoadModel(ctx, m.digest, func(stream, hexKey, dn string, attrs []byte) error {
		s := StreamName(stream)
		if _, ok := m.entries[s]; !ok {
			return nil
		}
		if failed.Load() {
			return errStopLoad
		}
		if cur = append(cur, saved{s, hexKey, dn, attrs}); len(cur) == batch {
			batches <- cur
			cur = make([]saved, 0, batch)
		}
		return nil
	})
	if len(cur) > 0 {
		batches <- cur
	}
	close(batches)
	if merr := <-mapped; merr != nil {
		err = merr
	}
	if err != nil {
		for s := range m.entries {
			m.entries[s] = map[string]*Mapped{}
		}
		return 0, err
	}
	for s, c := range cookies {
		if _, ok := m.entries[StreamName(s)]; ok {
			m.cookies[StreamName(s)] = c
		}
	}
	return n, nil
}

// errStopLoad ends a journal's read once a saved entry failed to restore.
var errStopLoad = errors.New("saved live model: stopped")

// restore puts a saved entry into the model.
func (m *Model) restore(s StreamName, hexKey, dn string, attrs []byte) error {
	key, err := hex.DecodeString(hexKey)
	if err != nil {
		return fmt.Errorf("saved live model entry %s: key: %w", dn, err)
	}
	e, err := decodeSaved(dn, attrs)
	if err != nil {
		return fmt.Errorf("saved live model entry %s: %w", dn, err)
	}
	m.entries[s][string(key)] = m.em.mapEntry(s, e)
	return nil
}

// Persist writes the journal every flushEvery (or sooner when many
// changes wait) until ctx ends, then once more. Write errors go to
// failed; the changes stay pending for the next write.
func (m *Model) Persist(ctx context.Context, failed func(error)) {
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := m.Flush(context.WithoutCancel(ctx)); err != nil {
				failed(err)
			}
			return
		case <-t.C:
		case <-m.flushNow:
		}
		if err := m.Flush(ctx); err != nil {
			failed(err)
		}
	}
}

// Flush saves the pending changes to the journal.
func (m *Model) Flush(ctx context.Context) error {
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	m.mu.Lock()
	ops, cookies := m.pending, m.pendingCookies
	m.pending, m.pendingCookies = map[journalKey]journalOp{}, map[StreamName][]byte{}
	j := m.journal
	m.mu.Unlock()
	if j == nil || len(ops) == 0 && len(cookies) == 0 {
		return nil
	}
	each := func(yield func(stream, key, dn string, attrs []byte) error) error {
		for _, op := range ops {
			if err := yield(op.stream, op.key, op.dn, op.attrs); err != nil {
				return err
			}
		}
		return nil
	}
	byName := make(map[string][]byte, len(cookies))
	for s, c := range cookies {
		byName[string(s)] = c
	}
	if err := j.SaveModel(ctx, each, byName); err != nil {
		// Put back what newer changes have not replaced.
		m.mu.Lock()
		for k, op := range ops {
			if _, newer := m.pending[k]; !newer {
				m.pending[k] = op
			}
		}
		for s, c := range cookies {
			if _, newer := m.pendingCookies[s]; !newer {
				m.pendingCookies[s] = c
			}
		}
		m.mu.Unlock()
		return fmt.Errorf("save the live directory model: %w", err)
	}
	return nil
}

// record queues a change for the journal (mu held).
func (m *Model) record(s StreamName, key, dn string, attrs []byte) {
	if m.journal == nil {
		return
	}
	m.pending[journalKey{s, key}] = journalOp{stream: string(s), key: hex.EncodeToString([]byte(key)), dn: dn, attrs: attrs}
	if len(m.pending) >= flushBatch {
		select {
		case m.flushNow <- struct{}{}:
		default:
		}
	}
}

// encodeSaved is what the journal keeps of an entry: its attributes, each
// name once (values of a name given twice merged) in name order, as
// uvarint counts and lengths before the bytes. At 1M users a restart
// decoding JSON into maps, then into go-ldap entries, spent 10 of its
// 40 s there.
func encodeSaved(e *ldap.Entry) []byte {
	names := make([]string, 0, len(e.Attributes))
	values := make(map[string][]string, len(e.Attributes))
	size := 0
	for _, at := range e.Attributes {
		if _, ok := values[at.Name]; !ok {
			names = append(names, at.Name)
		}
		values[at.Name] = append(values[at.Name], at.Values...)
		size += len(at.Name) + 2*binary.MaxVarintLen32
		for _, v := range at.Values {
			size += len(v) + binary.MaxVarintLen32
		}
	}
	slices.Sort(names)
	b := binary.AppendUvarint(make([]byte, 0, size+binary.MaxVarintLen32), uint64(len(names)))
	for _, n := range names {
		b = binary.AppendUvarint(b, uint64(len(n)))
		b = append(b, n...)
		b = binary.AppendUvarint(b, uint64(len(values[n])))
		for _, v := range values[n] {
			b = binary.AppendUvarint(b, uint64(len(v)))
			b = append(b, v...)
		}
	}
	return b
}

// decodeSaved makes the entry encodeSaved kept. The values are substrings
// of one copy of b (the mapping copies what it keeps).
func decodeSaved(dn string, b []byte) (*ldap.Entry, error) {
	data := string(b)
	pos := 0
	next := func() (int, error) {
		n, k := binary.Uvarint(b[pos:])
		if k <= 0 || n > uint64(len(b)) {
			return 0, fmt.Errorf("bad length at byte %d", pos)
		}
		pos += k
		return int(n), nil
	}
	str := func() (string, error) {
		n, err := next()
		if err != nil {
			return "", err
		}
		if n > len(b)-pos {
			return "", fmt.Errorf("%d bytes at byte %d, %d left", n, pos, len(b)-pos)
		}
		pos += n
		return data[pos-n : pos], nil
	}
	nattrs, err := next()
	if err != nil {
		return nil, err
	}
	e := &ldap.Entry{DN: dn, Attributes: make([]*ldap.EntryAttribute, 0, min(nattrs, len(b)))}
	for range nattrs {
		name, err := str()
		if err != nil {
			return nil, err
		}
		nvals, err := next()
		if err != nil {
			return nil, err
		}
		at := &ldap.EntryAttribute{Name: name, Values: make([]string, 0, min(nvals, len(b)-pos))}
		for range nvals {
			v, err := str()
			if err != nil {
				return nil, err
			}
			at.Values = append(at.Values, v)
		}
		e.Attributes = append(e.Attributes, at)
	}
	if pos != len(b) {
		return nil, fmt.Errorf("%d bytes after the attributes", len(b)-pos)
	}
	return e, nil
}
