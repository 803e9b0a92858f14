package directory

import (
	"hash/maphash"
	"strings"
)

// PackedHistory is a history held in a few large blocks instead of a map:
// every subject's key and DN back to back in one string, a fixed-size
// record per subject and an open-addressed index of them. The stored
// statuses at 1M users were 213 MB as a Previous, live beside the first
// run after a restart; packed they are about half that, in four
// allocations. Build it with a HistoryBuilder.
type PackedHistory struct {
	data     string
	recs     []packedRecord
	slots    []uint32 // record+1 by the key's hash, 0 empty; a power of two long
	seed     maphash.Seed
	statuses []Status // the distinct statuses, by packedRecord.status
}

type packedRecord struct {
	key    uint32 // offset in data; the DN follows the key
	keyLen uint32
	dnLen  uint32
	status uint8
	id     int64
}

var _ History = (*PackedHistory)(nil)

// Provisioned implements History.
func (h *PackedHistory) Provisioned(key string) (Provisioned, bool) {
	if len(h.slots) == 0 {
		return Provisioned{}, false
	}
	mask := uint64(len(h.slots) - 1)
	for i := maphash.String(h.seed, key) & mask; ; i = (i + 1) & mask {
		n := h.slots[i]
		if n == 0 {
			return Provisioned{}, false
		}
		if r := &h.recs[n-1]; h.data[r.key:r.key+r.keyLen] == key {
			return h.record(r), true
		}
	}
}

func (h *PackedHistory) record(r *packedRecord) Provisioned {
	dn := r.key + r.keyLen
	return Provisioned{Status: h.statuses[r.status], DN: h.data[dn : dn+r.dnLen], ID: r.id}
}

// Len implements History.
func (h *PackedHistory) Len() int { return len(h.recs) }

// All implements History, in the order the subjects were added.
func (h *PackedHistory) All(fn func(key string, p Provisioned)) {
	for i := range h.recs {
		r := &h.recs[i]
		fn(h.data[r.key:r.key+r.keyLen], h.record(r))
	}
}

// HistoryBuilder makes a PackedHistory, one subject at a time.
type HistoryBuilder struct {
	data     strings.Builder
	recs     []packedRecord
	statuses []Status
	tooLarge bool
}

// Grow makes room for n more subjects and size more bytes of their keys
// and DNs.
func (b *HistoryBuilder) Grow(n, size int) {
	if free := cap(b.recs) - len(b.recs); n > free {
		b.recs = append(make([]packedRecord, 0, len(b.recs)+n), b.recs...)
	}
	b.data.Grow(size)
}

// Add adds a subject; of a key added twice the first is kept. The key and
// DN are copied.
func (b *HistoryBuilder) Add(key []byte, status Status, dn []byte, id int64) {
	i := 0
	for i < len(b.statuses) && b.statuses[i] != status {
		i++
	}
	if i == len(b.statuses) {
		if i > 255 {
			// Not a status the rules make: kept out of the packed form
			// (History says none for the subject), and said by Err.
			b.tooLarge = true
			return
		}
		b.statuses = append(b.statuses, status)
	}
	off := b.data.Len()
	if uint64(off)+uint64(len(key))+uint64(len(dn)) >= dropped {
		b.tooLarge = true
		return
	}
	b.data.Write(key)
	b.data.Write(dn)
	b.recs = append(b.recs, packedRecord{key: uint32(off), keyLen: uint32(len(key)), dnLen: uint32(len(dn)), status: uint8(i), id: id})
}

// Complete says whether every subject added is in the history: false
// after more than 4 GiB of keys and DNs or 256 distinct statuses.
func (b *HistoryBuilder) Complete() bool { return !b.tooLarge }

// History returns the history of the subjects added; the builder is not
// to be used after it.
func (b *HistoryBuilder) History() *PackedHistory {
	h := &PackedHistory{data: b.data.String(), recs: b.recs, seed: maphash.MakeSeed(), statuses: b.statuses}
	if len(h.recs) == 0 {
		return h
	}
	// Three quarters full at most.
	size := 1
	for size*3 < len(h.recs)*4+1 {
		size *= 2
	}
	if h.index(size) {
		return h
	}
	// A key added twice: the first kept, the index made again.
	kept := h.recs[:0]
	for n := range h.recs {
		if h.recs[n].keyLen != dropped {
			kept = append(kept, h.recs[n])
		}
	}
	h.recs = kept
	h.index(size)
	return h
}

// dropped marks a record of a key added before.
const dropped = 1<<32 - 1

// index indexes the records; false when a key was there twice (the
// second and later marked dropped).
func (h *PackedHistory) index(size int) bool {
	h.slots = make([]uint32, size)
	mask := uint64(size - 1)
	unique := true
	for n := range h.recs {
		r := &h.recs[n]
		key := h.data[r.key : r.key+r.keyLen]
		i := maphash.String(h.seed, key) & mask
		for ; h.slots[i] != 0; i = (i + 1) & mask {
			if o := &h.recs[h.slots[i]-1]; h.data[o.key:o.key+o.keyLen] == key {
				r.keyLen, unique = dropped, false
				break
			}
		}
		if r.keyLen != dropped {
			h.slots[i] = uint32(n + 1)
		}
	}
	return unique
}
