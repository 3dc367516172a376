package wisp

// The .wtrace encoder: file header, chunk framing and the chunk payload (string table,
// records, event columns), written from docs/format.md. The conformance vectors pin every
// byte; encode_test.go checks them.
//
// A Chunk is built by appending records and events, then Encode turns it into the framed
// bytes of one chunk. The string table is derived while the records are written (first
// use, key before value), so callers never manage string indices.

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"hash/maphash"
)

// Codec is a chunk's compression.
type Codec uint8

const (
	CodecNone    Codec = 0
	CodecDeflate Codec = 1 // zlib-wrapped deflate (RFC 1950)
)

// Record types (docs/format.md "Records").
const (
	RecProcess  = 1
	RecUnit     = 2
	RecResource = 3
	RecLocation = 4
	RecFault    = 5
	RecStats    = 6
	RecEmbedded = 7
)

// Event kinds the Go agent writes itself (the table in docs/format.md).
const (
	KindClockAnchor = 40
	KindAgentDrop   = 41
	KindAgentFault  = 42
	KindAgentFlush  = 43
)

// MaxChunkBytes bounds a chunk's stored and raw lengths (docs/format.md).
const MaxChunkBytes = 64 << 20

// FileHeader is the 16 bytes every .wtrace starts with: magic, version 1.2 (1.2 added the embedded record), reserved.
var FileHeader = []byte{'W', 'T', 'R', 'A', 'C', 'E', 1, 2, 0, 0, 0, 0, 0, 0, 0, 0}

// Value is an attribute value: int64 (type 0), string (type 1) or []byte (type 2).
type Value any

// Attr is one record attribute.
type Attr struct {
	Key   string
	Value Value
}

// Record is one definition record.
type Record struct {
	Type  uint8
	ID    uint64
	Attrs []Attr

	rpc *rpcRec // an rpc resource kept typed (rpc.go): its attributes instead of Attrs
}

// Event is one row of the event columns.
type Event struct {
	Kind uint8
	Unit uint32
	Time uint64
	Res  uint32
	Arg  int64
	Loc  uint32
}

// Chunk is one chunk's content. FirstSeq numbers its first event.
type Chunk struct {
	Records  []Record
	FirstSeq uint64
	Events   []Event
}

// ErrTooLarge: a chunk past MaxChunkBytes.
var ErrTooLarge = errors.New("wtrace chunk over 64 MiB")

// Payload is the chunk's uncompressed payload.
func (c *Chunk) Payload() []byte {
	var s payloadScratch
	return c.payload(&s)
}

// payloadScratch is the memory an encoding uses, kept between chunks by the recorder (its
// flusher encodes a chunk every 50 ms): the string table's index, the strings, the
// records' bytes and the payload itself. What payload returns is s.out: valid until the
// next use of s.
type payloadScratch struct {
	strings internTable
	recs    []byte
	out     []byte
}

// internTable is a chunk's string table being built: each string gets the next index at
// its first use. rpc records (rpc.go) memoise their constant keys' indices and each
// attribute's last value, which saves hashing most of their strings again: the indices
// are the ones intern gives, so the bytes are the same.
//
// The index is an open-addressing hash table of its own rather than a Go map: a string
// seen for the first time (most of a request record's values are fresh trace and span ids)
// costs one hash and one probe sequence instead of a map lookup and a map insert (two
// hashes), and resetting it between chunks clears one small slice of integers.
type internTable struct {
	slots   []internSlot // len a power of two; at most half full
	strs    []string
	seed    maphash.Seed
	rpcKey  [rpcKeys]uint64 // index+1 of each rpc key, 0 while not interned
	rpcLast [rpcKeys]string // each rpc attribute's last value ...
	rpcIdx  [rpcKeys]uint64 // ... and its index
}

// internSlot is one slot of the index: the high 32 bits of the string's hash, then its
// index+1 (0: an empty slot) in the low 32 bits. Eight bytes, so that the index of a chunk
// with many fresh strings stays small in the cache. (A chunk holds far fewer than 2^32
// strings: at most maxRecords records of a few strings each.)
type internSlot uint64

func (s internSlot) idx() uint64 { return uint64(s) & 0xffffffff }

const internMinSlots = 256

func (t *internTable) reset() {
	if t.slots == nil {
		t.seed = maphash.MakeSeed()
		t.slots = make([]internSlot, internMinSlots)
	} else if n := len(t.strs); n > 0 { // (no strings: the index is empty already)
		// Sized for a chunk like the last one: a table that grew for a burst shrinks back.
		want := internMinSlots
		for want < 2*n {
			want <<= 1
		}
		if want < len(t.slots)/4 {
			t.slots = make([]internSlot, want)
		} else {
			clear(t.slots)
		}
	}
	clear(t.strs) // keeps no strings alive
	t.strs = t.strs[:0]
	t.rpcKey = [rpcKeys]uint64{}
	t.rpcLast = [rpcKeys]string{}
}

func (t *internTable) intern(x string) uint64 {
	if t.slots == nil {
		t.reset()
	}
	h := maphash.String(t.seed, x)
	tag := h &^ 0xffffffff
	mask := uint64(len(t.slots) - 1)
	for p := h & mask; ; p = (p + 1) & mask {
		s := t.slots[p]
		if s == 0 {
			i := uint64(len(t.strs))
			t.slots[p] = internSlot(tag | (i + 1))
			t.strs = append(t.strs, x)
			if 2*len(t.strs) > len(t.slots) {
				t.grow()
			}
			return i
		}
		if uint64(s)&^0xffffffff == tag && t.strs[s.idx()-1] == x {
			return s.idx() - 1
		}
	}
}

// grow doubles the index, placing every string again.
func (t *internTable) grow() {
	old := t.slots
	t.slots = make([]internSlot, 2*len(old))
	mask := uint64(len(t.slots) - 1)
	for _, s := range old {
		if s == 0 {
			continue
		}
		// The slot's place comes from the hash's low bits, which the slot does not keep:
		// hashed again (the string is at hand).
		p := maphash.String(t.seed, t.strs[s.idx()-1]) & mask
		for t.slots[p] != 0 {
			p = (p + 1) & mask
		}
		t.slots[p] = s
	}
}

func (c *Chunk) payload(s *payloadScratch) []byte {
	t := &s.strings
	t.reset()
	intern := t.intern
	recs := s.recs[:0]
	recs = binary.AppendUvarint(recs, uint64(len(c.Records)))
	for _, r := range c.Records {
		recs = append(recs, r.Type)
		recs = binary.AppendUvarint(recs, r.ID)
		if r.rpc != nil {
			recs = r.rpc.appendAttrs(recs, t)
			continue
		}
		recs = binary.AppendUvarint(recs, uint64(len(r.Attrs)))
		for _, a := range r.Attrs {
			recs = binary.AppendUvarint(recs, intern(a.Key))
			recs = appendValue(recs, a.Value, intern)
		}
	}
	strs := t.strs
	n := 0
	for _, x := range strs {
		n += len(x) + 5
	}
	out := s.out[:0]
	if need := n + len(recs) + 16 + len(c.Events)*33; cap(out) < need {
		out = make([]byte, 0, need)
	}
	out = binary.AppendUvarint(out, uint64(len(strs)))
	for _, x := range strs {
		out = binary.AppendUvarint(out, uint64(len(x)))
		out = append(out, x...)
	}
	out = append(out, recs...)
	t.reset()
	s.recs = recs[:0]
	defer func() { s.out = out[:0] }()
	out = binary.AppendUvarint(out, uint64(len(c.Events)))
	if len(c.Events) == 0 {
		return out
	}
	out = binary.AppendUvarint(out, c.FirstSeq)
	// Columns, one pass each: kind, unit, time, res, arg, loc.
	for _, e := range c.Events {
		out = append(out, e.Kind)
	}
	for _, e := range c.Events {
		out = binary.LittleEndian.AppendUint32(out, e.Unit)
	}
	for _, e := range c.Events {
		out = binary.LittleEndian.AppendUint64(out, e.Time)
	}
	for _, e := range c.Events {
		out = binary.LittleEndian.AppendUint32(out, e.Res)
	}
	for _, e := range c.Events {
		out = binary.LittleEndian.AppendUint64(out, uint64(e.Arg))
	}
	for _, e := range c.Events {
		out = binary.LittleEndian.AppendUint32(out, e.Loc)
	}
	return out
}

func appendValue(b []byte, v Value, intern func(string) uint64) []byte {
	switch x := v.(type) {
	case string:
		b = append(b, 1)
		return binary.AppendUvarint(b, intern(x))
	case []byte:
		b = append(b, 2)
		b = binary.AppendUvarint(b, uint64(len(x)))
		return append(b, x...)
	case int:
		return appendInt(b, int64(x))
	case int64:
		return appendInt(b, x)
	case uint32:
		return appendInt(b, int64(x))
	case uint64:
		return appendInt(b, int64(x))
	case bool:
		if x {
			return appendInt(b, 1)
		}
		return appendInt(b, 0)
	}
	return appendInt(b, 0) // unsupported types never reach here (callers are this package)
}

func appendInt(b []byte, v int64) []byte {
	b = append(b, 0)
	return binary.AppendUvarint(b, uint64(v<<1)^uint64(v>>63))
}

// Encode frames the chunk: a 20-byte chunk header and the (maybe compressed) payload.
// With CodecDeflate, a payload that does not shrink is stored with CodecNone.
func (c *Chunk) Encode(codec Codec) ([]byte, error) {
	var z Compressor
	return z.Frame(c.Payload(), codec)
}

// Compressor frames chunks, keeping one zlib writer between them (a new one allocates
// about a megabyte of state). Not safe for concurrent use.
type Compressor struct {
	buf     bytes.Buffer
	zw      *zlib.Writer
	scratch payloadScratch // chunk's encoding memory (frameChunk)
	frame   []byte         // the last chunk frameChunk framed
	// huffmanOnly: deflate without looking for repeats (zlib level -2), for the recorder's
	// own chunks: their strings are interned already and mostly fresh ids (trace and span
	// ids, headers carrying them), which LZ matching barely shrinks further, and it took
	// a quarter of the middleware's cost per request. Set before the first Frame.
	huffmanOnly bool
}

// frameChunk encodes and frames c like Frame(c.Payload(), codec), reusing the memory of
// the previous call: the result is valid until the next one (the recorder's flusher, whose
// sinks copy what they keep).
func (z *Compressor) frameChunk(c *Chunk, codec Codec) ([]byte, error) {
	raw := c.payload(&z.scratch)
	b, err := z.frameInto(z.frame[:0], raw, codec)
	if err == nil {
		z.frame = b
	}
	return b, err
}

// Frame wraps an uncompressed payload as one chunk.
func (z *Compressor) Frame(raw []byte, codec Codec) ([]byte, error) {
	return z.frameInto(nil, raw, codec)
}

func (z *Compressor) frameInto(dst, raw []byte, codec Codec) ([]byte, error) {
	if len(raw) > MaxChunkBytes {
		return nil, ErrTooLarge
	}
	stored := raw
	if codec == CodecDeflate {
		z.buf.Reset()
		if z.zw == nil {
			level := zlib.BestSpeed
			if z.huffmanOnly {
				level = zlib.HuffmanOnly
			}
			z.zw, _ = zlib.NewWriterLevel(&z.buf, level)
		} else {
			z.zw.Reset(&z.buf)
		}
		_, _ = z.zw.Write(raw)
		if err := z.zw.Close(); err != nil {
			return nil, err
		}
		if z.buf.Len() < len(raw) {
			stored = z.buf.Bytes()
		} else {
			codec = CodecNone
		}
	} else {
		codec = CodecNone
	}
	out := dst[:0]
	if cap(out) < 20+len(stored) {
		out = make([]byte, 0, 20+len(stored))
	}
	out = out[:20]
	clear(out[5:8])
	copy(out, "WCHK")
	out[4] = byte(codec)
	binary.LittleEndian.PutUint32(out[8:], uint32(len(stored)))
	binary.LittleEndian.PutUint32(out[12:], uint32(len(raw)))
	binary.LittleEndian.PutUint32(out[16:], crc32.ChecksumIEEE(raw))
	return append(out, stored...), nil
}

// framePiece frames one chunk holding only an embedded record of the execution tracer's
// stream (codec none) into dst, reusing its memory: the same bytes as
// Chunk{Records: []Record{{RecEmbedded, stream, format, data, more}}}.Encode(CodecNone),
// with a single copy of data (the flusher's hot path; encode_test.go checks the equality).
func framePiece(dst []byte, stream uint64, data []byte, more bool) []byte {
	dst = append(dst[:0], make([]byte, 20)...)
	dst = binary.AppendUvarint(dst, 4) // the string table: keys and the format's name
	for _, s := range [...]string{"format", StreamFormat, "data", "more"} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}
	dst = append(dst, 1, RecEmbedded) // one record
	dst = binary.AppendUvarint(dst, stream)
	dst = append(dst, 3, 0, 1, 1) // 3 attributes; format = string 1
	dst = append(dst, 2, 2)       // data = bytes
	dst = binary.AppendUvarint(dst, uint64(len(data)))
	dst = append(dst, data...)
	dst = append(dst, 3) // more = int
	dst = appendInt(dst, boolInt(more))
	dst = append(dst, 0) // no events
	raw := dst[20:]
	copy(dst, "WCHK")
	dst[4], dst[5], dst[6], dst[7] = byte(CodecNone), 0, 0, 0
	binary.LittleEndian.PutUint32(dst[8:], uint32(len(raw)))
	binary.LittleEndian.PutUint32(dst[12:], uint32(len(raw)))
	binary.LittleEndian.PutUint32(dst[16:], crc32.ChecksumIEEE(raw))
	return dst
}
