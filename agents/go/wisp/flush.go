package wisp

// Writing chunks (wmu held): flush takes what waits and writes it as chunks, one write(2)
// each (what goes into which chunk is said on flush); write encodes and writes one. A chunk
// the file system refuses is fulldisk.go's to handle.

const (
	maxReusedRecords = 1 << 12  // a list of records this long or shorter is reused by the next flush
	tracePieceMax    = 16 << 20 // bytes of one embedded piece (docs/format.md)
)

func (r *recorder) statsRecord() Record {
	return Record{Type: RecStats, ID: 0, Attrs: []Attr{
		{"events", r.nEvents},
		{"dropped", r.dropped},
		{"faults", r.faults},
		{"cost_ns_per_event", r.costNS},
		{"by_boundary", r.bounds.byBoundaryJSON(r.costNS)},
	}}
}

// flush writes everything waiting as chunks (one write each): one chunk with the process
// record (first in a segment), the definitions, the stats record and the agent's events,
// then the tracer's bytes in chunks of their own (at most tracePieceMax each), so that the
// destination can tell a stream's pieces from the rest (stream.go). final closes the
// tracer's stream (more=0).
func (r *recorder) flush(final bool) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.out == nil || r.closed {
		return nil
	}
	r.mu.Lock()
	start := nanotime()
	var pieces []Record
	var infos []pieceInfo
	var pieceWrites int64 // the tracer's batches in pieces
	cut := -1             // r.trace[:cut] goes into pieces; -1: r.trace stays as it is
	if r.streamOpen && r.streamBroken {
		// A piece of this stream was refused: what follows it cannot be read.
		if len(r.trace) > 0 {
			r.lostTraceLocked(int64(len(r.trace)), r.traceWrites)
		}
		r.trace, r.traceWrites, r.genEnd, r.genWrites = r.trace[:0], 0, 0, 0
		cut = 0
		if final {
			r.streamOpen, r.streamBroken = false, false
		}
	} else if r.streamOpen && (r.genEnd > 0 || final || len(r.trace) >= traceFlushAt) {
		// Whole generations only (what follows the last one's end waits for the next
		// flush), so that a stream a refused piece ends is readable up to that piece; at
		// the end, or when 4 MiB wait (memory stays bounded), everything.
		cut = r.genEnd
		pieceWrites = r.genWrites
		if final || len(r.trace) >= traceFlushAt {
			cut, pieceWrites = len(r.trace), r.traceWrites
		}
		r.traceWrites -= pieceWrites
		r.genEnd, r.genWrites = 0, 0
		data := r.trace[:cut]
		for {
			n := min(len(data), tracePieceMax)
			last := n == len(data)
			pieces = append(pieces, r.embedded(data[:n], !(last && final)))
			infos = append(infos, pieceInfo{stream: r.streamNo, first: r.streamFirst, final: last && final})
			r.streamFirst = false
			data = data[n:]
			if last {
				break
			}
		}
	}
	var c Chunk
	c.Records = r.chunkRecs[:0] // reused between flushes (wmu held)
	if !r.wroteProcess {
		c.Records = append(c.Records, r.processRecord(r.segment))
	}
	c.Records = append(c.Records, r.carry...)
	c.Records = append(c.Records, r.records...)
	r.carry = nil
	// The definitions' list is reused (cleared: it keeps nothing alive) unless a burst made
	// it large.
	if cap(r.records) <= maxReusedRecords {
		clear(r.records)
		r.records = r.records[:0]
	} else {
		r.records = nil
	}
	if final {
		r.streamOpen = false
	}
	r.sayDropsLocked(start)
	r.emitLocked(Event{Kind: KindAgentFlush, Time: uint64(start), Arg: int64(len(r.events) + 1)})
	c.Records = append(c.Records, r.statsRecord())
	c.FirstSeq, c.Events = r.seq, r.events
	r.seq += uint64(len(c.Events))
	// New buffers: the taken ones are written below, with mu free. The tracer's bytes
	// alternate between two buffers (taken and spare), so that they make no garbage.
	r.events = nil
	var taken []byte
	if cut >= 0 {
		// What follows the last whole generation moves to the other buffer (usually a few
		// batches); when no piece is made, the buffer stays.
		taken = r.trace
		r.trace, r.spare = append(r.spare[:0], r.trace[cut:]...), nil
	}
	r.mu.Unlock()
	defer func() {
		if taken != nil && cap(taken) <= 2*traceFlushAt {
			r.mu.Lock()
			r.spare = taken[:0]
			r.mu.Unlock()
		}
	}()
	failed := r.write(&c, pieceInfo{})
	if cap(c.Records) <= maxReusedRecords {
		clear(c.Records)
		r.chunkRecs = c.Records[:0]
	}
	if failed == nil {
		r.wroteProcess = true
	}
	for i := range pieces {
		r.mu.Lock()
		broken := r.streamBroken
		r.mu.Unlock()
		data := pieces[i].Attrs[1].Value.([]byte)
		if broken { // an earlier piece of this flush was refused
			r.mu.Lock()
			r.lostTraceLocked(int64(len(data)), 0)
			r.mu.Unlock()
			continue
		}
		pc := Chunk{Records: pieces[i : i+1]}
		if err := r.write(&pc, infos[i]); err != nil {
			r.pieceRefused(infos[i], int64(len(data)), pieceWrites, err)
			r.refused(&pc, infos[i], err) // after the count: the news says it
			failed = err
		}
	}
	return failed
}

func (r *recorder) embedded(data []byte, more bool) Record {
	return Record{Type: RecEmbedded, ID: uint64(r.streamNo), Attrs: []Attr{
		{"format", StreamFormat}, {"data", data}, {"more", boolInt(more)},
	}}
}

// write encodes and writes one chunk (wmu held). A failed write (a full disk) drops the
// chunk's events, counted, and keeps the program going.
func (r *recorder) write(c *Chunk, piece pieceInfo) error {
	var b []byte
	var err error
	if piece.stream != 0 && !r.cfg.CompressTrace {
		// The tracer's bytes are stored as they are by default: deflating them took ~3 % of
		// the CPU of a goroutine-heavy service (bench/bench_go_agent.py), as much as the
		// tracer itself; they are varint-packed already (deflate: ~2.5x smaller). Framed
		// into a reused buffer with one copy: the sinks do not keep what they are given.
		rec := c.Records[0]
		r.pieceBuf = framePiece(r.pieceBuf, rec.ID, rec.Attrs[1].Value.([]byte), rec.Attrs[2].Value.(int64) == 1)
		b = r.pieceBuf
	} else {
		b, err = r.z.frameChunk(c, r.cfg.Codec)
	}
	if err == nil {
		err = r.out.write(b, piece)
	}
	if err != nil {
		if piece.stream == 0 { // a tracer piece's refusal is flush's to handle (pieceRefused)
			r.refused(c, piece, err)
		}
		return err
	}
	r.writeFailed = false
	r.written += int64(len(b))
	return nil
}
