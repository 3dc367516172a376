package wisp

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// vectorDir is the repository's shared conformance vectors.
const vectorDir = "../../../conformance/vectors"

type vector struct {
	Chunks []struct {
		Records []struct {
			Type  json.Number          `json:"type"`
			ID    json.Number          `json:"id"`
			Attrs [][2]json.RawMessage `json:"attrs"`
		} `json:"records"`
		Events *struct {
			FirstSeq json.Number      `json:"first_seq"`
			Rows     [][6]json.Number `json:"rows"`
		} `json:"events"`
	} `json:"chunks"`
}

func u(n json.Number, bits int) uint64 {
	v, err := strconv.ParseUint(n.String(), 10, bits)
	if err != nil {
		panic(err)
	}
	return v
}

func attrValue(raw json.RawMessage) Value {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		panic(err)
	}
	switch x := v.(type) {
	case json.Number:
		i, err := strconv.ParseInt(x.String(), 10, 64)
		if err != nil {
			panic(err)
		}
		return i
	case string:
		return x
	case map[string]any:
		b, err := hex.DecodeString(x["hex"].(string))
		if err != nil {
			panic(err)
		}
		return b
	}
	panic(fmt.Sprintf("attribute value %s", raw))
}

func encodeVector(t *testing.T, path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v vector
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	out := append([]byte{}, FileHeader...)
	for _, jc := range v.Chunks {
		var c Chunk
		for _, jr := range jc.Records {
			r := Record{Type: uint8(u(jr.Type, 8)), ID: u(jr.ID, 64)}
			for _, a := range jr.Attrs {
				var key string
				if err := json.Unmarshal(a[0], &key); err != nil {
					t.Fatal(err)
				}
				r.Attrs = append(r.Attrs, Attr{key, attrValue(a[1])})
			}
			c.Records = append(c.Records, r)
		}
		if jc.Events != nil {
			c.FirstSeq = u(jc.Events.FirstSeq, 64)
			for _, row := range jc.Events.Rows {
				arg, err := strconv.ParseInt(row[4].String(), 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				c.Events = append(c.Events, Event{
					Kind: uint8(u(row[0], 8)), Unit: uint32(u(row[1], 32)), Time: u(row[2], 64),
					Res: uint32(u(row[3], 32)), Arg: arg, Loc: uint32(u(row[5], 32)),
				})
			}
		}
		b, err := c.Encode(CodecNone)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return out
}

// Every conformance vector encodes to exactly the bytes of its .wtrace.
func TestConformanceVectors(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join(vectorDir, "*.json"))
	if len(paths) < 8 {
		t.Fatalf("found %d vectors in %s", len(paths), vectorDir)
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			want, err := os.ReadFile(p[:len(p)-len(".json")] + ".wtrace")
			if err != nil {
				t.Fatal(err)
			}
			got := encodeVector(t, p)
			if !bytes.Equal(got, want) {
				i := 0
				for i < len(got) && i < len(want) && got[i] == want[i] {
					i++
				}
				t.Fatalf("%d bytes, want %d; first difference at byte %d", len(got), len(want), i)
			}
		})
	}
}

// A deflate chunk holds the same payload (zlib-wrapped) and its CRC is of the raw bytes.
func TestDeflateChunk(t *testing.T) {
	c := Chunk{FirstSeq: 1}
	for i := 0; i < 500; i++ {
		c.Events = append(c.Events, Event{Kind: KindClockAnchor, Time: uint64(i), Arg: 7})
	}
	b, err := c.Encode(CodecDeflate)
	if err != nil {
		t.Fatal(err)
	}
	if b[4] != byte(CodecDeflate) || len(b) >= len(c.Payload()) {
		t.Fatalf("codec %d, %d bytes for a %d-byte payload", b[4], len(b), len(c.Payload()))
	}
	tiny := Chunk{}
	b, _ = tiny.Encode(CodecDeflate)
	if b[4] != byte(CodecNone) {
		t.Fatalf("an incompressible payload should be stored as none, got codec %d", b[4])
	}
}

// framePiece writes exactly what the general encoder writes for a tracer piece.
func TestFramePieceMatchesEncode(t *testing.T) {
	for _, data := range [][]byte{nil, []byte("go 1.26 trace\x00\x00\x00"), bytes.Repeat([]byte{0xff, 7}, 70000)} {
		for _, more := range []bool{true, false} {
			c := Chunk{Records: []Record{{Type: RecEmbedded, ID: 300, Attrs: []Attr{
				{"format", StreamFormat}, {"data", data}, {"more", boolInt(more)},
			}}}}
			want, err := c.Encode(CodecNone)
			if err != nil {
				t.Fatal(err)
			}
			if got := framePiece([]byte("old contents of the reused buffer"), 300, data, more); !bytes.Equal(got, want) {
				t.Fatalf("%d bytes, more=%v: framePiece differs from Encode", len(data), more)
			}
		}
	}
}

// The string table's own index gives every string the index of its first use, across its
// growth and between chunks (the map it replaced is the reference).
func TestInternTableFirstUseIndices(t *testing.T) {
	var tab internTable
	for round, n := range []int{10, 3000, 5, 700, 0, 40} {
		tab.reset()
		ref := map[string]uint64{}
		for i := 0; i < 3*n; i++ {
			x := strconv.Itoa((i*7919)%(2*n+1)) + "-" + strconv.Itoa(round)
			if i%5 == 0 {
				x = "" // the empty string is a string like any other
			}
			want, ok := ref[x]
			if !ok {
				want = uint64(len(ref))
				ref[x] = want
			}
			if got := tab.intern(x); got != want {
				t.Fatalf("round %d: intern(%q) = %d, want %d", round, x, got, want)
			}
		}
		if len(tab.strs) != len(ref) {
			t.Fatalf("round %d: %d strings listed, want %d", round, len(tab.strs), len(ref))
		}
		for x, i := range ref {
			if tab.strs[i] != x {
				t.Fatalf("round %d: string %d is %q, want %q", round, i, tab.strs[i], x)
			}
		}
	}
}
