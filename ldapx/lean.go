package ldapx

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"unsafe"

	"github.com/go-ldap/ldap/v3"
)

// The lean decoder reads LDAP messages (RFC 4511 section 4.1.1) from the
// wire without building a tree: a search result entry, which is nearly
// every message of a full read or a syncrepl refresh, is scanned in place
// and copied once. go-ldap's decoder builds a packet per BER element
// (≈25 KB of garbage per entry at a refresh); it remains in use, on the
// few messages that are not entries, through ber.DecodePacket.

// BER identifiers that LDAP messages use.
const (
	tagBoolean     = 0x01
	tagInteger     = 0x02
	tagOctetString = 0x04
	tagEnumerated  = 0x0a
	tagSequence    = 0x30
	tagSet         = 0x31
	tagControls    = 0xa0 // [0] Controls, constructed

	tagSearchResultEntry = 0x64 // [APPLICATION 4], constructed
)

// maxMessage bounds one message's length: a group of a million members
// is ≈30 MB; a length beyond this is a broken or hostile stream.
const maxMessage = 512 << 20

var errMalformed = errors.New("malformed LDAP message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errMalformed, fmt.Sprintf(format, args...))
}

// element is one BER element of a buffer: its identifier octet and its
// contents.
type element struct {
	tag  byte
	body []byte
}

// split takes the first element off b. Only what LDAP uses is accepted:
// one-octet identifiers and definite lengths (RFC 4511 section 5.1).
func split(b []byte) (element, []byte, error) {
	if len(b) == 0 {
		return element{}, nil, malformed("element expected, none left")
	}
	tag := b[0]
	if tag&0x1f == 0x1f {
		return element{}, nil, malformed("identifier 0x%02x: multi-octet tags are not LDAP's", tag)
	}
	n, size, err := length(b[1:])
	if err != nil {
		return element{}, nil, err
	}
	start := 1 + size
	if n > len(b)-start {
		return element{}, nil, malformed("element 0x%02x of %d octets overruns its container (%d left)", tag, n, len(b)-start)
	}
	return element{tag: tag, body: b[start : start+n]}, b[start+n:], nil
}

// length decodes a definite length; size is how many octets it took.
func length(b []byte) (n, size int, err error) {
	if len(b) == 0 {
		return 0, 0, malformed("length expected, none left")
	}
	first := b[0]
	if first < 0x80 {
		return int(first), 1, nil
	}
	k := int(first & 0x7f)
	switch {
	case k == 0:
		return 0, 0, malformed("indefinite length (LDAP uses definite lengths only)")
	case k > 8:
		return 0, 0, malformed("length of %d octets", k)
	case len(b) < 1+k:
		return 0, 0, malformed("length of %d octets, %d left", k, len(b)-1)
	}
	for _, x := range b[1 : 1+k] {
		n = n<<8 | int(x)
		if n > maxMessage {
			return 0, 0, malformed("length over %d octets", maxMessage)
		}
	}
	return n, 1 + k, nil
}

// expect takes the first element off b and checks its identifier.
func expect(b []byte, tag byte, what string) (body, rest []byte, err error) {
	e, rest, err := split(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	if e.tag != tag {
		return nil, nil, malformed("%s: identifier 0x%02x, want 0x%02x", what, e.tag, tag)
	}
	return e.body, rest, nil
}

// message is one LDAPMessage: its ID, its protocol operation and its
// controls' element (nil without), all slices of the read buffer.
type message struct {
	id       int64
	op       element
	controls []byte
	// raw is the whole message, for ber.DecodePacket.
	raw []byte
}

// messageReader reads messages from a stream into a buffer it reuses.
type messageReader struct {
	r   *bufio.Reader
	buf []byte
}

// keepBuffer: a buffer that grew past this for one large message is not
// kept for the next.
const keepBuffer = 1 << 20

// read reads the next message. Its slices are valid until the next read.
func (mr *messageReader) read() (message, error) {
	var head [10]byte
	if _, err := io.ReadFull(mr.r, head[:2]); err != nil {
		return message{}, err
	}
	if head[0] != tagSequence {
		return message{}, malformed("message starts with 0x%02x, not a SEQUENCE", head[0])
	}
	hl := 2
	if head[1] >= 0x80 {
		k := int(head[1] & 0x7f)
		if k == 0 || k > 8 {
			_, _, err := length(head[1:2])
			if err == nil {
				err = malformed("length of %d octets", k)
			}
			return message{}, err
		}
		if _, err := io.ReadFull(mr.r, head[2:2+k]); err != nil {
			return message{}, noEOF(err)
		}
		hl += k
	}
	n, _, err := length(head[1:hl])
	if err != nil {
		return message{}, err
	}
	if cap(mr.buf) > keepBuffer && n+hl <= keepBuffer {
		mr.buf = nil
	}
	if cap(mr.buf) < hl+n {
		mr.buf = make([]byte, hl+n)
	}
	raw := mr.buf[:hl+n]
	copy(raw, head[:hl])
	if _, err := io.ReadFull(mr.r, raw[hl:]); err != nil {
		return message{}, noEOF(err)
	}
	return parseMessage(raw, raw[hl:])
}

// noEOF: a stream that ends inside a message was cut.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseMessage splits a message's contents into ID, operation and controls.
func parseMessage(raw, body []byte) (message, error) {
	idb, rest, err := expect(body, tagInteger, "message ID")
	if err != nil {
		return message{}, err
	}
	id, err := messageID(idb)
	if err != nil {
		return message{}, err
	}
	op, rest, err := split(rest)
	if err != nil {
		return message{}, fmt.Errorf("message %d: operation: %w", id, err)
	}
	m := message{id: id, op: op, raw: raw}
	if len(rest) > 0 {
		var ctl element
		if ctl, rest, err = split(rest); err != nil {
			return message{}, fmt.Errorf("message %d: controls: %w", id, err)
		}
		if ctl.tag != tagControls || len(rest) > 0 {
			return message{}, malformed("message %d: element 0x%02x after its operation", id, ctl.tag)
		}
		m.controls = ctl.body
	}
	return m, nil
}

// messageID decodes a MessageID, INTEGER (0 .. 2^31-1).
func messageID(b []byte) (int64, error) {
	if len(b) == 0 || len(b) > 5 || b[0]&0x80 != 0 {
		return 0, malformed("message ID of %d octets % x", len(b), b)
	}
	var id int64
	for _, x := range b {
		id = id<<8 | int64(x)
	}
	if id > 1<<31-1 {
		return 0, malformed("message ID %d", id)
	}
	return id, nil
}

// decodeEntry decodes a SearchResultEntry's contents:
//
//	SEQUENCE { objectName LDAPDN, attributes SEQUENCE OF
//	    SEQUENCE { type AttributeDescription, vals SET OF OCTET STRING } }
//
// It copies body once; the DN, names and values are strings over that
// copy, and ByteValues slices of it, so an entry costs six allocations
// whatever its size. The copy is never written to: ByteValues are
// read-only, as they share the strings' memory.
func decodeEntry(body []byte) (*ldap.Entry, error) {
	nAttrs, nValues, err := entryShape(body)
	if err != nil {
		return nil, err
	}
	own := make([]byte, len(body))
	copy(own, body)
	s := entryScratch{attrs: make([]*ldap.EntryAttribute, nAttrs), held: make([]ldap.EntryAttribute, nAttrs),
		values: make([]string, nValues), bytes: make([][]byte, nValues)}
	e := &ldap.Entry{}
	s.fill(e, own)
	return e, nil
}

// entryScratch is the room a transient entry is decoded in, kept from
// one entry to the next.
type entryScratch struct {
	e      ldap.Entry
	attrs  []*ldap.EntryAttribute
	held   []ldap.EntryAttribute
	values []string
	bytes  [][]byte
}

// transient decodes body as decodeEntry does, without copying it: the
// entry, its names and values are valid until body or the scratch is
// used again. A caller keeps what it needs of it by copying.
func (s *entryScratch) transient(body []byte) (*ldap.Entry, error) {
	nAttrs, nValues, err := entryShape(body)
	if err != nil {
		return nil, err
	}
	if cap(s.attrs) < nAttrs {
		s.attrs, s.held = make([]*ldap.EntryAttribute, nAttrs), make([]ldap.EntryAttribute, nAttrs)
	}
	if cap(s.values) < nValues {
		s.values, s.bytes = make([]string, nValues), make([][]byte, nValues)
	}
	s.attrs, s.held = s.attrs[:nAttrs], s.held[:nAttrs]
	s.values, s.bytes = s.values[:nValues], s.bytes[:nValues]
	s.e = ldap.Entry{}
	s.fill(&s.e, body)
	return &s.e, nil
}

// entryShape checks an entry's shape and counts its attributes and
// values, so that fill has every slice at its size.
func entryShape(body []byte) (nAttrs, nValues int, err error) {
	dn, rest, err := expect(body, tagOctetString, "entry DN")
	if err != nil {
		return 0, 0, err
	}
	attrs, rest, err := expect(rest, tagSequence, "entry attributes")
	if err != nil {
		return 0, 0, err
	}
	if len(rest) > 0 {
		return 0, 0, malformed("entry %q: %d octets after its attributes", dn, len(rest))
	}
	for a := attrs; len(a) > 0; {
		var attr []byte
		if attr, a, err = expect(a, tagSequence, "attribute"); err != nil {
			return 0, 0, fmt.Errorf("entry %q: %w", dn, err)
		}
		name, r, err := expect(attr, tagOctetString, "attribute type")
		if err != nil {
			return 0, 0, fmt.Errorf("entry %q: %w", dn, err)
		}
		vals, r, err := expect(r, tagSet, "attribute values")
		if err != nil {
			return 0, 0, fmt.Errorf("entry %q: attribute %q: %w", dn, name, err)
		}
		if len(r) > 0 {
			return 0, 0, malformed("entry %q: attribute %q: %d octets after its values", dn, name, len(r))
		}
		for len(vals) > 0 {
			if _, vals, err = expect(vals, tagOctetString, "value"); err != nil {
				return 0, 0, fmt.Errorf("entry %q: attribute %q: %w", dn, name, err)
			}
			nValues++
		}
		nAttrs++
	}
	return nAttrs, nValues, nil
}

// fill decodes body, whose shape entryShape checked, into e, with the
// scratch's slices (of the sizes entryShape counted) as its attributes
// and values: the same walk, which cannot fail.
func (s *entryScratch) fill(e *ldap.Entry, body []byte) {
	dnb, rest, _ := expect(body, tagOctetString, "")
	attrs, _, _ := expect(rest, tagSequence, "")
	e.DN, e.Attributes = view(dnb), s.attrs
	values, bytes := s.values, s.bytes
	for i := range s.attrs {
		attr, r, _ := expect(attrs, tagSequence, "")
		attrs = r
		name, r2, _ := expect(attr, tagOctetString, "")
		vals, _, _ := expect(r2, tagSet, "")
		n := 0
		for v := vals; len(v) > 0; n++ {
			var value []byte
			value, v, _ = expect(v, tagOctetString, "")
			values[n] = view(value)
			bytes[n] = value[:len(value):len(value)]
		}
		s.held[i] = ldap.EntryAttribute{Name: view(name), Values: values[:n:n], ByteValues: bytes[:n:n]}
		values, bytes = values[n:], bytes[n:]
		s.attrs[i] = &s.held[i]
	}
}

// view is b as a string without a copy; b is never written to again.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}
