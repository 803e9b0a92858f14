package ldapx

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
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
func (m *Model) Load(ctx context.Context, j Journal) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.journal = j
	n := 0
	cookies, err := j.LoadModel(ctx, m.digest, func(stream, hexKey, dn string, attrs []byte) error {
		s := StreamName(stream)
		if _, ok := m.entries[s]; !ok {
			return nil
		}
		key, err := hex.DecodeString(hexKey)
		if err != nil {
			return fmt.Errorf("saved live model entry %s: key: %w", dn, err)
		}
		var a map[string][]string
		if err := json.Unmarshal(attrs, &a); err != nil {
			return fmt.Errorf("saved live model entry %s: %w", dn, err)
		}
		m.entries[s][string(key)] = m.em.mapEntry(s, ldap.NewEntry(dn, a))
		n++
		return nil
	})
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

// attrsJSON is what the journal keeps of an entry.
func attrsJSON(e *ldap.Entry) []byte {
	a := make(map[string][]string, len(e.Attributes))
	for _, at := range e.Attributes {
		a[at.Name] = append(a[at.Name], at.Values...)
	}
	b, _ := json.Marshal(a) // strings only: cannot fail
	return b
}
