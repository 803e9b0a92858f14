package ldapx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// serveOnce answers the first request read from conn with the messages
// given (each an LDAPMessage's contents after its ID, sent with the
// request's ID), then keeps reading until the client goes away.
func serveOnce(conn net.Conn, bodies ...[]byte) {
	defer conn.Close()
	p, err := ber.ReadPacket(conn)
	if err != nil || len(p.Children) == 0 {
		return
	}
	id, _ := p.Children[0].Value.(int64)
	for _, b := range bodies {
		msg := append([]byte{tagInteger, 1, byte(id)}, b...)
		out := appendLength([]byte{tagSequence}, len(msg))
		if _, err := conn.Write(append(out, msg...)); err != nil {
			return
		}
	}
	io.Copy(io.Discard, conn)
}

// outcome is what a client made of a search.
type outcome struct {
	entries  []*ldap.Entry
	controls []string
	err      error
	hung     bool
}

func collect(ctx context.Context, resp ldap.Response) outcome {
	var o outcome
	for resp.Next() {
		if e := resp.Entry(); e != nil {
			o.entries = append(o.entries, e)
		}
		for _, c := range resp.Controls() {
			o.controls = append(o.controls, c.String())
		}
	}
	o.err = resp.Err()
	o.hung = ctx.Err() != nil
	return o
}

// searchBoth runs one search against the same answer with go-ldap's
// connection and with ours.
func searchBoth(t *testing.T, bodies ...[]byte) (theirs, ours outcome) {
	req := ldap.NewSearchRequest("dc=example,dc=org", ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, nil)
	// go-ldap hangs on some bytes (a broken element after an entry's):
	// each client has its own time.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	client, server := net.Pipe()
	go serveOnce(server, bodies...)
	gl := ldap.NewConn(client, false)
	gl.Start()
	theirs = collect(ctx, gl.SearchAsync(ctx, req, 16))
	gl.Close()
	if theirs.hung && theirs.err == nil {
		theirs.err = errors.New("go-ldap hung")
	}

	return theirs, searchOurs(t, bodies...)
}

// searchOurs runs the search with our connection; it never hangs.
func searchOurs(t *testing.T, bodies ...[]byte) outcome {
	req := ldap.NewSearchRequest("dc=example,dc=org", ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client, server := net.Pipe()
	go serveOnce(server, bodies...)
	c := newConnection(client)
	c.start()
	ours := collect(ctx, c.SearchAsync(ctx, req, 16))
	c.Close()
	if ours.hung {
		t.Fatalf("our connection hung on % x", bodies)
	}
	return ours
}

// element builds a BER element.
func elem(tag byte, parts ...[]byte) []byte {
	body := bytes.Join(parts, nil)
	return append(appendLength([]byte{tag}, len(body)), body...)
}

func str(s string) []byte { return elem(tagOctetString, []byte(s)) }

// entryOp is a SearchResultEntry with attributes given as name, values...
// groups separated by "|".
func entryOp(dn string, attrs ...[]string) []byte {
	var list [][]byte
	for _, a := range attrs {
		var vals [][]byte
		for _, v := range a[1:] {
			vals = append(vals, str(v))
		}
		list = append(list, elem(tagSequence, str(a[0]), elem(tagSet, vals...)))
	}
	return elem(tagSearchResultEntry, str(dn), elem(tagSequence, list...))
}

var (
	doneOK = elem(0x65, []byte{0x0a, 1, 0}, str(""), str(""))
	// A sync state control (RFC 4533): add, entryUUID, cookie.
	syncState = elem(tagControls, elem(tagSequence, str(ldap.ControlTypeSyncState),
		str(string(elem(tagSequence, []byte{0x0a, 1, 1}, str("0123456789abcdef"), str("rid=001,csn=1"))))))
)

// sameEntries reports how two decodings of the same entries differ.
func sameEntries(a, b []*ldap.Entry) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d entries, %d", len(a), len(b))
	}
	for i := range a {
		if a[i].DN != b[i].DN || len(a[i].Attributes) != len(b[i].Attributes) {
			return fmt.Errorf("entry %d: %q with %d attributes, %q with %d", i, a[i].DN, len(a[i].Attributes), b[i].DN, len(b[i].Attributes))
		}
		for j, x := range a[i].Attributes {
			y := b[i].Attributes[j]
			if x.Name != y.Name || !slices.Equal(x.Values, y.Values) || !slices.EqualFunc(x.ByteValues, y.ByteValues, bytes.Equal) {
				return fmt.Errorf("entry %q attribute %d: %q %q %x, %q %q %x", a[i].DN, j, x.Name, x.Values, x.ByteValues, y.Name, y.Values, y.ByteValues)
			}
		}
	}
	return nil
}

func TestLeanDecoderAgreesWithGoLDAP(t *testing.T) {
	big := make([]string, 5001)
	big[0] = "memberUid"
	for i := range 5000 {
		big[i+1] = fmt.Sprintf("u%06d", i)
	}
	for _, tt := range []struct {
		name   string
		bodies [][]byte
		err    string
	}{
		{"entries and done", [][]byte{entryOp("uid=alice,dc=example,dc=org", []string{"uid", "alice"}, []string{"cn", "Alice", ""},
			[]string{"objectGUID", "\x00\xff\x80binary"}), entryOp("cn=empty"), doneOK}, ""},
		{"a large group", [][]byte{entryOp("cn=big", big), doneOK}, ""},
		{"an entry with a sync state", [][]byte{append(entryOp("uid=bob", []string{"uid", "bob"}), syncState...), doneOK}, ""},
		{"a referral", [][]byte{elem(0x73, str("ldap://elsewhere/")), doneOK}, ""},
		{"a size limit", [][]byte{entryOp("uid=a"), elem(0x65, []byte{0x0a, 1, 4}, str(""), str("too many"))}, "Size Limit Exceeded"},
		{"a sync info message", [][]byte{elem(0x79, elem(0x80, []byte(ldap.ControlTypeSyncInfo)), elem(0x81, elem(0xa2, str("c"), []byte{0x01, 1, 0xff}))), doneOK}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			theirs, ours := searchBoth(t, tt.bodies...)
			if err := sameEntries(theirs.entries, ours.entries); err != nil {
				t.Error(err)
			}
			if !slices.Equal(theirs.controls, ours.controls) {
				t.Errorf("controls: go-ldap %q, ours %q", theirs.controls, ours.controls)
			}
			if fmt.Sprint(theirs.err) != fmt.Sprint(ours.err) {
				t.Errorf("error: go-ldap %v, ours %v", theirs.err, ours.err)
			}
			if tt.err != "" && !strings.Contains(fmt.Sprint(ours.err), tt.err) {
				t.Errorf("error %v, want %q", ours.err, tt.err)
			}
		})
	}
}

// FuzzLeanEntry: whatever the bytes of an entry, the lean decoder never
// accepts what go-ldap refuses and never reads it differently. It is
// stricter than go-ldap on encodings no server sends (a value tagged as
// another string type, values outside a SET, trailing elements), which it
// refuses; FuzzLeanEntryEncoded covers every well-formed entry. The
// transient decoding (SearchMapped's) reads every entry as decodeEntry.
func FuzzLeanEntry(f *testing.F) {
	f.Add(entryOp("uid=alice", []string{"uid", "alice"}, []string{"cn", "A", "B"})[2:], []byte(nil))
	f.Add(entryOp("cn=x")[2:], syncState)
	// Sync states in other shapes: critical, without a cookie, a short
	// entryUUID, a field too many, two controls (decoded in place or by
	// go-ldap, alike).
	for _, fields := range [][]byte{
		elem(tagSequence, []byte{0x0a, 1, 2}, str("0123456789abcdef")),
		elem(tagSequence, []byte{0x0a, 1, 0}, str("0123456789abcde")),
		elem(tagSequence, []byte{0x0a, 1, 3}, str("0123456789abcdef"), str("c"), str("d")),
		elem(tagSequence, []byte{0x0a, 2, 0, 1}, str("0123456789abcdef")),
	} {
		f.Add(entryOp("cn=x")[2:], elem(tagControls, elem(tagSequence, str(ldap.ControlTypeSyncState), []byte{0x01, 1, 0xff}, str(string(fields)))))
		f.Add(entryOp("cn=x")[2:], elem(tagControls, elem(tagSequence, str(ldap.ControlTypeSyncState), str(string(fields))),
			elem(tagSequence, str("1.2.3"), str("v"))))
	}
	f.Add([]byte{0x04, 0x00, 0x30, 0x80, 0x00, 0x00}, []byte(nil))
	f.Add([]byte{0x04, 0x81, 0x01, 'x', 0x30, 0x00}, []byte(nil))
	// The entry decoded transiently too, in a scratch that held others.
	var scratch entryScratch
	scratch.transient(entryOp("cn=y", []string{"a", "1", "2", "3"}, []string{"b", "4"})[2:])
	f.Fuzz(func(t *testing.T, body, controls []byte) {
		sameTransient(t, &scratch, body)
		msg := append(elem(tagSearchResultEntry, body), controls...)
		if _, err := ber.DecodePacketErr(elem(tagSequence, []byte{tagInteger, 1, 1}, msg)); err != nil {
			// Not BER: go-ldap's reader ends the connection (and its
			// search waits for the timeout). Ours must refuse it too.
			if ours := searchOurs(t, msg, doneOK); ours.err == nil {
				t.Fatalf("ours read %d entries from a message that is not BER (%v)", len(ours.entries), err)
			}
			return
		}
		theirs, ours := searchBoth(t, msg, doneOK)
		if ours.err != nil {
			return
		}
		if theirs.err != nil {
			t.Fatalf("ours read %d entries where go-ldap failed: %v", len(ours.entries), theirs.err)
		}
		if err := sameEntries(theirs.entries, ours.entries); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(theirs.controls, ours.controls) {
			t.Fatalf("controls: go-ldap %q, ours %q", theirs.controls, ours.controls)
		}
	})
}

// FuzzLeanEntryEncoded: an entry encoded as a server does is read by both
// decoders alike.
func FuzzLeanEntryEncoded(f *testing.F) {
	f.Add("uid=alice,dc=example,dc=org", "uid\x00alice\x01cn\x00Alice\x00A.")
	f.Add("", "\x01\x01")
	f.Fuzz(func(t *testing.T, dn, spec string) {
		var attrs [][]string
		for _, a := range strings.Split(spec, "\x01") {
			attrs = append(attrs, strings.Split(a, "\x00"))
		}
		// Long forms of lengths too: a 200-octet value needs one.
		theirs, ours := searchBoth(t, entryOp(dn, attrs...), doneOK)
		if theirs.err != nil || ours.err != nil {
			t.Fatalf("go-ldap: %v, ours: %v", theirs.err, ours.err)
		}
		if err := sameEntries(theirs.entries, ours.entries); err != nil {
			t.Fatal(err)
		}
	})
}

// TestConnectionCallerGoesAway: a caller that stops reading a search
// (its context ends, it never calls Next again) does not stall the
// connection's other searches: the search is abandoned.
func TestConnectionCallerGoesAway(t *testing.T) {
	client, server := net.Pipe()
	c := newConnection(client)
	c.start()
	defer c.Close()
	many := [][]byte{}
	for i := range 50 {
		many = append(many, entryOp(fmt.Sprintf("uid=u%d", i)))
	}
	abandoned := make(chan int64, 1)
	go func() {
		defer server.Close()
		for n := 0; ; n++ {
			p, err := ber.ReadPacket(server)
			if err != nil {
				return
			}
			id, _ := p.Children[0].Value.(int64)
			if p.Children[1].Tag == ldap.ApplicationAbandonRequest {
				id, _ := messageID(p.Children[1].Data.Bytes())
				abandoned <- id
				continue
			}
			bodies := many
			if n > 0 {
				bodies = [][]byte{entryOp("uid=second"), doneOK}
			}
			for _, b := range bodies {
				msg := append([]byte{tagInteger, 1, byte(id)}, b...)
				server.Write(append(appendLength([]byte{tagSequence}, len(msg)), msg...))
			}
		}
	}()
	req := ldap.NewSearchRequest("", ldap.ScopeWholeSubtree, 0, 0, 0, false, "(objectClass=*)", nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	first := c.SearchAsync(ctx, req, 2)
	if !first.Next() {
		t.Fatal(first.Err())
	}
	cancel() // and never read again

	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	got := collect(ctx2, c.SearchAsync(ctx2, req, 2))
	if got.hung || got.err != nil || len(got.entries) != 1 || got.entries[0].DN != "uid=second" {
		t.Fatalf("second search: %+v", got)
	}
	select {
	case id := <-abandoned:
		if id != 1 {
			t.Errorf("abandoned message %d, want 1", id)
		}
	case <-time.After(5 * time.Second):
		t.Error("the first search was never abandoned")
	}
}

// TestConnectionEndsMidSearch: a connection that ends inside a search
// ends it with a network error, not a clean end (go-ldap's is clean).
func TestConnectionEndsMidSearch(t *testing.T) {
	client, server := net.Pipe()
	c := newConnection(client)
	c.start()
	defer c.Close()
	go func() {
		p, err := ber.ReadPacket(server)
		if err != nil {
			return
		}
		id, _ := p.Children[0].Value.(int64)
		msg := append([]byte{tagInteger, 1, byte(id)}, entryOp("uid=a")...)
		full := append(appendLength([]byte{tagSequence}, len(msg)), msg...)
		server.Write(full)
		server.Write(full[:len(full)-3]) // cut inside the next message
		server.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := ldap.NewSearchRequest("", ldap.ScopeWholeSubtree, 0, 0, 0, false, "(objectClass=*)", nil, nil)
	got := collect(ctx, c.SearchAsync(ctx, req, 4))
	if len(got.entries) != 1 || !ldap.IsErrorWithCode(got.err, ldap.ErrorNetwork) || !errors.Is(got.err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %d entries, err %v", len(got.entries), got.err)
	}
	// A search after the end fails at once.
	if got := collect(ctx, c.SearchAsync(ctx, req, 4)); got.err == nil || got.hung {
		t.Fatalf("search on an ended connection: %+v", got)
	}
}

// BenchmarkDecodeEntry: the lean decoder against go-ldap's packet tree on
// the same user entry.
func BenchmarkDecodeEntry(b *testing.B) {
	op := entryOp("uid=u000001,ou=people,dc=example,dc=org", []string{"uid", "u000001"}, []string{"uidNumber", "100001"},
		[]string{"gidNumber", "200001"}, []string{"cn", "User u000001"}, []string{"mail", "u000001@example.org"},
		[]string{"homeDirectory", "/home/u000001"}, []string{"loginShell", "/bin/bash"}, []string{"entryUUID", "0b4c1a9e-5f7d-103f-9d7a-1b2c3d4e5f60"})
	msg := elem(tagSequence, []byte{tagInteger, 1, 7}, op)
	b.Run("lean", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m, err := parseMessage(msg, msg[len(msg)-len(op)-3:])
			if err != nil {
				b.Fatal(err)
			}
			if _, err := decodeEntry(m.op.body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-ldap-packets", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ber.DecodePacketErr(msg); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecodeSyncState: the sync state control every entry of a
// syncrepl refresh carries, decoded in place and by go-ldap.
func BenchmarkDecodeSyncState(b *testing.B) {
	m := message{controls: syncState[2:]} // the controls' element's contents
	for _, lean := range []bool{true, false} {
		name := map[bool]string{true: "lean", false: "go-ldap"}[lean]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if lean {
					if _, err := decodeControls(m); err != nil {
						b.Fatal(err)
					}
					continue
				}
				one, _, _ := split(m.controls)
				raw := appendLength([]byte{one.tag}, len(one.body))
				p, err := ber.DecodePacketErr(append(raw, one.body...))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := ldap.DecodeControl(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
