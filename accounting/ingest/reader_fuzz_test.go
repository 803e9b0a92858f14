package ingest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"io"
	"log/slog"
	"testing"

	"github.com/collabsync/collabsync/accounting"
)

// collected keeps the batches a reader hands over, for FuzzReader.
type collected struct{ batches []*batch }

func (c *collected) write(_ context.Context, b *batch) error {
	c.batches = append(c.batches, b)
	return nil
}

// FuzzReader drives the reader alone (no SQLite, so it runs fast under the
// fuzzer) over any content, in every format, live or compressed, in small
// batches. Every checkpoint it hands over must be one a later run can
// trust: offsets that only grow, within the content; a line count equal to
// the newlines before the offset; a hash state and digest equal to the
// SHA-256 of exactly the content before the offset (how a renamed or
// gzipped copy is recognised); a fingerprint that is the content's head.
//
// Inputs stay small (the fuzzer handles megabyte inputs badly): a line
// over the limit is spliced in at the first '~' of content when withLong is set.
func FuzzReader(f *testing.F) {
	f.Add(uint8(4), false, false, []byte(sacctRange(1, 3)+"garbage\n"))
	f.Add(uint8(4), false, true, []byte(sacctRange(1, 2)+"~"))
	f.Add(uint8(4), true, true, []byte(sacctRange(1, 2)+"~\n"+sacctLine(3, 1, "a")))
	f.Add(uint8(0), false, true, []byte("ClusterId = 1\nProcId = 0\n~\nJobStatus = 4\n*** x\nClusterId = 2\n"))
	f.Add(uint8(5), true, false, []byte("; UnixStartTime: 1700000000\n1 0 0 10 1 -1 -1 1 10 -1 1 1 1 -1 1 1 -1 -1\n2 0 0 10"))
	formats := Formats().Names()
	long := bytes.Repeat([]byte("y"), maxLine+5)
	f.Fuzz(func(t *testing.T, format uint8, compressed, withLong bool, content []byte) {
		if withLong {
			content = bytes.Replace(content, []byte("~"), long, 1)
		}
		src := Source{Name: "f", Format: formats[int(format)%len(formats)], Options: sacctSource.Options, MaxBadRatio: ptr(1.0)}
		in := &Ingester{BatchLines: 2, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Attribute: func(*accounting.Job) string { return "c" }}
		br := bufio.NewReaderSize(bytes.NewReader(content), maxLine)
		head, _ := br.Peek(fingerprintLen)
		fp := append(make([]byte, 0, fingerprintLen), head...)
		r := &reader{in: in, src: src, path: "p", size: int64(len(content)), compressed: compressed,
			dec: Formats()[src.Format](src.Options), br: br, hash: sha256.New(), fp: fp}
		var out collected
		if err := r.run(context.Background(), &out); err != nil {
			t.Fatalf("run: %v", err)
		}
		if len(out.batches) == 0 {
			t.Fatal("no final batch")
		}
		var last int64 = -1
		for i, b := range out.batches {
			cp := b.cp
			if cp.offset < last || cp.offset > int64(len(content)) {
				t.Fatalf("batch %d: offset %d after %d, content %d bytes", i, cp.offset, last, len(content))
			}
			last = cp.offset
			done := content[:cp.offset]
			lines := int64(bytes.Count(done, []byte("\n")))
			if compressed && cp.complete && len(done) > 0 && done[len(done)-1] != '\n' {
				lines++ // a compressed file's last line needs no newline
			}
			if cp.line != lines {
				t.Errorf("batch %d: line %d, but %d lines end before offset %d", i, cp.line, lines, cp.offset)
			}
			want := sha256.Sum256(done)
			if !bytes.Equal(cp.digest, want[:]) {
				t.Fatalf("batch %d: digest is not the SHA-256 of the first %d bytes", i, cp.offset)
			}
			h := sha256.New()
			if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(cp.hashState); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(h.Sum(nil), want[:]) {
				t.Fatalf("batch %d: hash state is not that of the first %d bytes", i, cp.offset)
			}
			if n := min(len(content), fingerprintLen); !bytes.HasPrefix(content, cp.fingerprint) || (cp.complete && len(cp.fingerprint) != n) {
				t.Errorf("batch %d: fingerprint %q is not the content's head", i, cp.fingerprint)
			}
		}
		// A live log of one-line records stops only before a line still
		// being written (HTCondor's stop at the last record's end).
		if src.Format != "htcondor" && !compressed && last < int64(len(content)) && bytes.IndexByte(content[last:], '\n') >= 0 {
			t.Errorf("a live file stopped at %d before a complete line", last)
		}
	})
}
