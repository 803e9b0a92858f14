package ldapx

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
	"github.com/google/uuid"
)

// Connection is one LDAP connection whose messages collabsync reads
// itself: search result entries with the lean decoder, everything else
// (results, referrals, intermediate responses, controls) with go-ldap's
// own decoding, so errors and controls are go-ldap's types. Searches may
// run at once on one connection; each gets its messages by ID.
//
// It does what collabsync asks of a directory: StartTLS, simple and SASL
// EXTERNAL binds, searches (paged, syncrepl) and abandon. It writes
// nothing to the directory.
type Connection struct {
	nc net.Conn
	// uri is the URI the connection was made to (Client.connect).
	uri    string
	reader messageReader
	nextID atomic.Int32

	wmu sync.Mutex // one message written at a time

	// scratch is where the reader decodes the entries of a search that
	// maps them as they come (SearchMapped).
	scratch entryScratch

	mu  sync.Mutex
	ops map[int64]*operation
	// failed is why reading stopped.
	failed error

	closed    chan struct{}
	closeOnce sync.Once
}

var (
	_ Conn         = (*Connection)(nil)
	_ entryMapping = (*Connection)(nil)
)

// operation is a search in progress: the reader hands it its messages.
type operation struct {
	results chan searchResult
	// stop is the caller's context ending.
	stop <-chan struct{}
	// gone is closed when the search was abandoned: the reader drops its
	// messages instead of waiting for room.
	gone     chan struct{}
	goneOnce sync.Once
	// mapEntry, if set, maps each entry as the reader decodes it
	// (SearchMapped).
	mapEntry func(*ldap.Entry) any
}

func (op *operation) quit() { op.goneOnce.Do(func() { close(op.gone) }) }

// searchResult is one message of a search, decoded.
type searchResult struct {
	entry *ldap.Entry
	// mapped is what the search's mapEntry made of an entry.
	mapped   any
	referral string
	controls []ldap.Control
	err      error
	done     bool
	// extended is an extended operation's response value.
	extended []byte
}

// newConnection wraps a dialled connection. Nothing is read until start.
func newConnection(nc net.Conn) *Connection {
	c := &Connection{nc: nc, ops: map[int64]*operation{}, closed: make(chan struct{})}
	c.reader.r = bufio.NewReaderSize(nc, 64<<10)
	return c
}

// start begins reading messages for searches, after StartTLS and bind.
func (c *Connection) start() { go c.read() }

// Close closes the connection; searches in progress end with an error.
func (c *Connection) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closed)
		err = c.nc.Close()
	})
	return err
}

// setup runs fn with the connection's deadline set from ctx: StartTLS and
// bind are answered before any search, read in line.
func (c *Connection) setup(ctx context.Context, fn func() error) error {
	if d, ok := ctx.Deadline(); ok {
		c.nc.SetDeadline(d)
		defer c.nc.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { c.nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	err := fn()
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// exchange sends a request and reads its one response in line (before
// start), returning it decoded by go-ldap.
func (c *Connection) exchange(op *ber.Packet) (*ber.Packet, error) {
	id := c.nextID.Add(1)
	if err := c.send(id, op, nil); err != nil {
		return nil, err
	}
	m, err := c.reader.read()
	if err != nil {
		return nil, ldap.NewError(ldap.ErrorNetwork, err)
	}
	if m.id != int64(id) {
		return nil, malformed("response to message %d came as message %d", id, m.id)
	}
	return ber.DecodePacketErr(m.raw)
}

// StartTLS upgrades the connection (RFC 4511 section 4.14).
func (c *Connection) StartTLS(ctx context.Context, tc *tls.Config) error {
	return c.setup(ctx, func() error {
		req := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationExtendedRequest, nil, "Start TLS")
		req.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "1.3.6.1.4.1.1466.20037", "TLS Extended Command"))
		resp, err := c.exchange(req)
		if err != nil {
			return err
		}
		if err := ldap.GetLDAPError(resp); err != nil {
			return err
		}
		if c.reader.r.Buffered() > 0 {
			return malformed("the server sent %d octets before the TLS handshake", c.reader.r.Buffered())
		}
		tlsConn := tls.Client(c.nc, tc)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			return err
		}
		c.nc = tlsConn
		c.reader.r.Reset(tlsConn)
		return nil
	})
}

// Bind binds with a DN and password (RFC 4513 section 5.1.3).
func (c *Connection) Bind(ctx context.Context, dn, password string) error {
	req := bindRequest(dn)
	req.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, password, "Password"))
	return c.bind(ctx, req)
}

// ExternalBind binds with SASL EXTERNAL: the identity of an ldapi://
// peer or a TLS client certificate (RFC 4513 section 5.2.3).
func (c *Connection) ExternalBind(ctx context.Context) error {
	req := bindRequest("")
	sasl := ber.Encode(ber.ClassContext, ber.TypeConstructed, 3, nil, "SASL")
	sasl.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "EXTERNAL", "Mechanism"))
	sasl.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "Credentials"))
	req.AppendChild(sasl)
	return c.bind(ctx, req)
}

func bindRequest(dn string) *ber.Packet {
	req := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationBindRequest, nil, "Bind Request")
	req.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 3, "Version"))
	req.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, "Name"))
	return req
}

func (c *Connection) bind(ctx context.Context, req *ber.Packet) error {
	return c.setup(ctx, func() error {
		resp, err := c.exchange(req)
		if err != nil {
			return err
		}
		return ldap.GetLDAPError(resp)
	})
}

// send writes one message.
func (c *Connection) send(id int32, op *ber.Packet, controls []ldap.Control) error {
	msg := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAP Request")
	msg.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(id), "MessageID"))
	msg.AppendChild(op)
	if len(controls) > 0 {
		ctl := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "Controls")
		for _, control := range controls {
			ctl.AppendChild(control.Encode())
		}
		msg.AppendChild(ctl)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if _, err := c.nc.Write(msg.Bytes()); err != nil {
		return ldap.NewError(ldap.ErrorNetwork, err)
	}
	return nil
}

// SearchAsync starts a search; its results come through the Response as
// they arrive, at most bufferSize ahead of the caller. Ending ctx abandons
// the search and ends the Response without an error (as go-ldap's).
func (c *Connection) SearchAsync(ctx context.Context, req *ldap.SearchRequest, bufferSize int) ldap.Response {
	return c.search(ctx, req, bufferSize, nil)
}

// search sends a search request; mapEntry is SearchMapped's (nil: none).
func (c *Connection) search(ctx context.Context, req *ldap.SearchRequest, bufferSize int, mapEntry func(*ldap.Entry) any) *response {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchRequest, nil, "Search Request")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, req.BaseDN, "Base DN"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(req.Scope), "Scope"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, uint64(req.DerefAliases), "Deref Aliases"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, uint64(req.SizeLimit), "Size Limit"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, uint64(req.TimeLimit), "Time Limit"))
	op.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, req.TypesOnly, "Types Only"))
	filter, err := ldap.CompileFilter(req.Filter)
	if err != nil {
		return &response{ctx: ctx, c: c, err: err, ended: true}
	}
	op.AppendChild(filter)
	attrs := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "Attributes")
	for _, a := range req.Attributes {
		attrs.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a, "Attribute"))
	}
	op.AppendChild(attrs)
	return c.request(ctx, op, req.Controls, bufferSize, mapEntry)
}

// SearchMapped is SearchAsync with each entry mapped by mapEntry as it
// is read, before the next message is: the entry it is given is valid
// only during the call (its strings are the receive buffer's), so what
// mapEntry returns must copy every string it keeps. The Response's Entry
// is nil for a mapped entry and Mapped returns what mapEntry made; an
// entry with a ranged attribute (Active Directory's member;range=0-1499)
// is not mapped but returned whole, for the caller to complete.
//
// At 100k users the entries' copies and structures were two fifths of
// what a full read allocated, all of it garbage once mapped.
func (c *Connection) SearchMapped(ctx context.Context, req *ldap.SearchRequest, bufferSize int, mapEntry func(*ldap.Entry) any) MappedResponse {
	return c.search(ctx, req, bufferSize, mapEntry)
}

// request sends an operation whose answers come to a response.
func (c *Connection) request(ctx context.Context, op *ber.Packet, controls []ldap.Control, bufferSize int, mapEntry func(*ldap.Entry) any) *response {
	r := &response{ctx: ctx, c: c}
	r.id = int64(c.nextID.Add(1))
	r.op = &operation{results: make(chan searchResult, max(bufferSize, 1)), stop: ctx.Done(), gone: make(chan struct{}), mapEntry: mapEntry}
	c.mu.Lock()
	if c.failed != nil {
		c.mu.Unlock()
		r.err, r.ended = c.failed, true
		return r
	}
	c.ops[r.id] = r.op
	c.mu.Unlock()
	if err := c.send(int32(r.id), op, controls); err != nil {
		c.forget(r.id)
		r.err, r.ended = err, true
	}
	return r
}

// WhoAmI asks the server which identity the connection is bound as
// (RFC 4532): "dn:..." or "u:...", empty when anonymous.
func (c *Connection) WhoAmI(ctx context.Context) (string, error) {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationExtendedRequest, nil, "Who Am I")
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "1.3.6.1.4.1.4203.1.11.3", "Who Am I"))
	r := c.request(ctx, op, nil, 1, nil)
	for r.Next() {
	}
	if r.err != nil {
		return "", fmt.Errorf("who am I: %w", r.err)
	}
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	return string(r.final.extended), nil
}

// Syncrepl starts an RFC 4533 content synchronization search (as
// go-ldap's Conn.Syncrepl, without changing req).
func (c *Connection) Syncrepl(ctx context.Context, req *ldap.SearchRequest, bufferSize int, mode ldap.ControlSyncRequestMode, cookie []byte, reloadHint bool) ldap.Response {
	sync := *req
	sync.Controls = append(append([]ldap.Control(nil), req.Controls...), ldap.NewControlSyncRequest(mode, cookie, reloadHint))
	return c.SearchAsync(ctx, &sync, bufferSize)
}

func (c *Connection) forget(id int64) {
	c.mu.Lock()
	delete(c.ops, id)
	c.mu.Unlock()
}

// abandon tells the server to stop a search (RFC 4511 section 4.11) and
// drops what still comes for it.
func (c *Connection) abandon(id int64, op *operation) {
	c.mu.Lock()
	_, running := c.ops[id]
	delete(c.ops, id)
	c.mu.Unlock()
	op.quit()
	if running {
		c.send(c.nextID.Add(1), ber.NewInteger(ber.ClassApplication, ber.TypePrimitive, ldap.ApplicationAbandonRequest, id, "Abandon"), nil)
	}
}

// read hands each message to its search until the connection ends.
func (c *Connection) read() {
	var err error
	for {
		var m message
		if m, err = c.reader.read(); err != nil {
			break
		}
		if m.id == 0 {
			// An unsolicited notification (RFC 4511 section 4.4): the
			// server is about to close the connection, and says why.
			err = unsolicited(m)
			break
		}
		c.mu.Lock()
		op := c.ops[m.id]
		c.mu.Unlock()
		if op == nil {
			continue // abandoned, or not ours
		}
		var res searchResult
		if op.mapEntry != nil && m.op.tag == tagSearchResultEntry && m.controls == nil {
			res = c.decodeMapped(m, op.mapEntry)
		} else {
			res = decodeResult(m)
		}
		if res.done {
			c.forget(m.id)
		}
		select {
		case op.results <- res:
		case <-op.gone:
		case <-op.stop:
			// The caller went away without reading on. The reader never
			// waits to write: the server may be waiting for it to read.
			go c.abandon(m.id, op)
		case <-c.closed:
		}
		if res.err != nil && !res.done {
			// A message that cannot be decoded leaves the stream's
			// framing in doubt: the connection is done.
			err = res.err
			break
		}
	}
	c.mu.Lock()
	c.failed = ldap.NewError(ldap.ErrorNetwork, fmt.Errorf("connection ended: %w", err))
	ops := c.ops
	c.ops = map[int64]*operation{}
	c.mu.Unlock()
	for _, op := range ops {
		close(op.results)
	}
	c.Close()
}

// decodeMapped decodes an entry in the scratch and maps it, unless it
// has a ranged attribute (then it is decoded whole, for the caller).
func (c *Connection) decodeMapped(m message, mapEntry func(*ldap.Entry) any) searchResult {
	e, err := c.scratch.transient(m.op.body)
	if err != nil {
		return searchResult{err: ldap.NewError(ldap.ErrorNetwork, err)}
	}
	for _, a := range e.Attributes {
		if strings.Contains(a.Name, ";range=") {
			return decodeResult(m)
		}
	}
	return searchResult{mapped: mapEntry(e)}
}

// unsolicited is the reason an unsolicited notification gives.
func unsolicited(m message) error {
	p, err := ber.DecodePacketErr(m.raw)
	if err != nil {
		return err
	}
	if err := ldap.GetLDAPError(p); err != nil {
		return fmt.Errorf("the server closes the connection: %w", err)
	}
	return errors.New("the server closes the connection (unsolicited notification)")
}

// decodeResult decodes one message of a search. An error that is not the
// search's own result (done) is a message that could not be decoded.
func decodeResult(m message) searchResult {
	if m.op.tag == tagSearchResultEntry {
		e, err := decodeEntry(m.op.body)
		if err != nil {
			return searchResult{err: ldap.NewError(ldap.ErrorNetwork, err)}
		}
		res := searchResult{entry: e}
		if m.controls != nil {
			if res.controls, err = decodeControls(m); err != nil {
				return searchResult{err: ldap.NewError(ldap.ErrorNetwork, err)}
			}
		}
		return res
	}
	p, err := ber.DecodePacketErr(m.raw)
	if err == nil && len(p.Children) < 2 {
		err = malformed("message %d has no operation", m.id)
	}
	if err != nil {
		return searchResult{err: ldap.NewError(ldap.ErrorNetwork, err)}
	}
	op := p.Children[1]
	var res searchResult
	switch op.Tag {
	case ldap.ApplicationSearchResultDone:
		if err := ldap.GetLDAPError(p); err != nil {
			return searchResult{err: err, done: true}
		}
		res.done = true
	case ldap.ApplicationExtendedResponse:
		if err := ldap.GetLDAPError(p); err != nil {
			return searchResult{err: err, done: true}
		}
		res.done = true
		for _, child := range op.Children {
			if child.ClassType == ber.ClassContext && child.Tag == 11 {
				res.extended = child.Data.Bytes()
			}
		}
		return res
	case ldap.ApplicationSearchResultReference:
		if len(op.Children) == 0 {
			return searchResult{err: ldap.NewError(ldap.ErrorNetwork, malformed("message %d: a referral without a URI", m.id))}
		}
		s, ok := op.Children[0].Value.(string)
		if !ok {
			return searchResult{err: ldap.NewError(ldap.ErrorNetwork, malformed("message %d: a referral's URI is not a string", m.id))}
		}
		return searchResult{referral: s}
	case ldap.ApplicationIntermediateResponse:
		control, err := ldap.DecodeControl(op)
		if err != nil {
			return searchResult{err: ldap.NewError(ldap.ErrorNetwork, fmt.Errorf("intermediate response: %w", err))}
		}
		return searchResult{controls: []ldap.Control{control}}
	default:
		return searchResult{err: ldap.NewError(ldap.ErrorNetwork, malformed("message %d: operation %d is no answer to a search", m.id, op.Tag))}
	}
	if len(p.Children) > 2 {
		for _, child := range p.Children[2].Children {
			control, err := ldap.DecodeControl(child)
			if err != nil {
				return searchResult{err: ldap.NewError(ldap.ErrorNetwork, fmt.Errorf("search result done: control: %w", err)), done: true}
			}
			res.controls = append(res.controls, control)
		}
	}
	return res
}

// decodeControls decodes an entry's controls: a syncrepl entry's sync
// state in place (leanSyncState), any other with go-ldap.
func decodeControls(m message) ([]ldap.Control, error) {
	var out []ldap.Control
	for rest := m.controls; len(rest) > 0; {
		var one element
		var err error
		if one, rest, err = split(rest); err != nil {
			return nil, fmt.Errorf("entry controls: %w", err)
		}
		if one.tag == tagSequence {
			if c, ok := leanSyncState(one.body); ok {
				out = append(out, c)
				continue
			}
		}
		raw := make([]byte, 0, len(one.body)+10)
		raw = append(raw, one.tag)
		raw = appendLength(raw, len(one.body))
		raw = append(raw, one.body...)
		p, err := ber.DecodePacketErr(raw)
		if err != nil {
			return nil, fmt.Errorf("entry control: %w", err)
		}
		control, err := ldap.DecodeControl(p)
		if err != nil {
			return nil, fmt.Errorf("entry control: %w", err)
		}
		out = append(out, control)
	}
	return out, nil
}

// leanSyncState decodes a Sync State control (RFC 4533 section 2.2) in the
// shape servers send it: every entry of a syncrepl refresh carries one,
// and go-ldap's packet tree for it was 11 s of CPU in a 54 s first start
// at 1M users (a CPU profile). Anything else (another control, another
// shape) is not ok, and left to go-ldap: the result is go-ldap's own type,
// with what go-ldap makes of the same bytes (FuzzLeanEntry compares them).
func leanSyncState(control []byte) (ldap.Control, bool) {
	typ, rest, err := expect(control, tagOctetString, "control type")
	if err != nil || string(typ) != ldap.ControlTypeSyncState {
		return nil, false
	}
	if len(rest) > 0 && rest[0] == tagBoolean { // criticality, which go-ldap's sync state does not keep
		var b []byte
		if b, rest, err = expect(rest, tagBoolean, "criticality"); err != nil || len(b) != 1 {
			return nil, false
		}
	}
	value, rest, err := expect(rest, tagOctetString, "control value")
	if err != nil || len(rest) > 0 {
		return nil, false
	}
	fields, rest, err := expect(value, tagSequence, "sync state")
	if err != nil || len(rest) > 0 {
		return nil, false
	}
	state, fields, err := expect(fields, tagEnumerated, "state")
	if err != nil || len(state) != 1 || state[0] >= 0x80 {
		return nil, false
	}
	id, fields, err := expect(fields, tagOctetString, "entryUUID")
	if err != nil || len(id) != len(uuid.UUID{}) {
		return nil, false
	}
	var cookie []byte
	if len(fields) > 0 {
		if cookie, fields, err = expect(fields, tagOctetString, "cookie"); err != nil || len(fields) > 0 {
			return nil, false
		}
		cookie = bytes.Clone(cookie) // the read buffer is reused
	}
	return &ldap.ControlSyncState{State: ldap.ControlSyncStateState(state[0]), EntryUUID: uuid.UUID(id), Cookie: cookie}, true
}

// appendLength appends a definite BER length.
func appendLength(b []byte, n int) []byte {
	if n < 0x80 {
		return append(b, byte(n))
	}
	var octets []byte
	for v := n; v > 0; v >>= 8 {
		octets = append([]byte{byte(v)}, octets...)
	}
	return append(append(b, 0x80|byte(len(octets))), octets...)
}

// response is a search's ldap.Response.
type response struct {
	ctx   context.Context
	c     *Connection
	id    int64
	op    *operation
	cur   searchResult
	final searchResult // the done message
	err   error
	ended bool
	// last: the done message carried controls, returned by this Next;
	// the following Next ends.
	last bool
}

func (r *response) Entry() *ldap.Entry       { return r.cur.entry }
func (r *response) Mapped() any              { return r.cur.mapped }
func (r *response) Referral() string         { return r.cur.referral }
func (r *response) Controls() []ldap.Control { return r.cur.controls }
func (r *response) Err() error               { return r.err }

func (r *response) Next() bool {
	if r.ended || r.last {
		r.end()
		return false
	}
	if r.ctx.Err() != nil {
		r.end()
		return false
	}
	select {
	case res, ok := <-r.op.results:
		switch {
		case !ok:
			r.c.mu.Lock()
			r.err = r.c.failed
			r.c.mu.Unlock()
			r.ended = true
			return false
		case res.err != nil:
			r.err = res.err
			r.end()
			return false
		case res.done:
			r.cur, r.last, r.final = res, true, res
			if len(res.controls) == 0 {
				r.end()
				return false
			}
			return true
		}
		r.cur = res
		return true
	case <-r.ctx.Done():
		r.end()
		return false
	}
}

// end abandons the search unless its result came.
func (r *response) end() {
	if r.ended {
		return
	}
	r.ended = true
	r.cur = searchResult{}
	if r.last {
		r.op.quit()
		return
	}
	r.c.abandon(r.id, r.op)
}
