package dev.willowisp.agent;

import java.io.IOException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.locks.LockSupport;

/**
 * The consuming half of the recording: the flusher thread, and everything that turns what
 * the {@link Recorder} collected into {@code .wtrace} chunks for its {@link ChunkSink}.
 *
 * <p>The recorder owns what the program's threads touch (rings, ids, the record queue) and
 * stays free of flush state, so its hot path reads nothing that this side writes; this class
 * owns what only a flush touches (sequence numbers, counts, anchors, the codec, the sink),
 * all of it under {@link #flushLock}. The flusher thread wakes every {@code
 * WILLOWISP_FLUSH_MS} (50 ms; sooner when a ring fills up), drains the rings first and the
 * record queue second (so every record an event refers to is in the same chunk or an
 * earlier one), adds anchors, drops and stats, and hands one framed chunk to the sink, which
 * decides where it goes (a segment file or the collector's stream) and what a full disk
 * costs. Nothing here throws into the program: failures are counted as faults and, once
 * nothing can be written, events are simply counted.
 */
final class Flusher {
  /**
   * WILLOWISP_JAVA_CODEC=auto: chunks are deflated while the recording's event rate stays at
   * or below this (deflate costs ~100 ns per event: at this rate ~1 % of one CPU); a faster
   * recording (a lock-heavy program) stores its chunks as {@code none} (29 bytes per event),
   * so the agent's CPU does not grow with the rate of lock use by that much.
   */
  static final long AUTO_DEFLATE_EVENTS_PER_S = 100_000;

  private final Recorder rec;

  // Flusher state; guarded by flushLock.
  private final Object flushLock = new Object();
  private long seq = 1;
  private long events;
  private long droppedTotal;
  private long lastAnchor;
  /** The previous flush's start (for the event rate the codec is chosen by). */
  private long lastFlush;
  /** The flusher's event columns, reused from chunk to chunk; guarded by flushLock. */
  private Wtrace.Events scratch = new Wtrace.Events(1024);
  /** The virtual threads' unit records of the chunk being written (from VCREATE rows). */
  private final Wtrace.VUnits vunits = new Wtrace.VUnits();
  private boolean anchorDue = true;
  /** Where chunks go (segment files or the collector) and what a full disk cost; guarded by flushLock. */
  private final ChunkSink sink;
  /** The flusher thread once started (null before); the recorder wakes it when a ring fills. */
  volatile Thread thread;
  private volatile boolean stopping;
  /** The flusher's measured cost per event (encoding and compression), ns; flusher writes. */
  volatile long serializeNsPerEvent;
  private volatile long eventsPublished;
  private volatile long droppedPublished;

  Flusher(Recorder rec) {
    this.rec = rec;
    this.sink = new ChunkSink(rec.cfg, rec.processId, rec.pid, rec.agentThreads, new Framing());
  }

  void wake() {
    Thread f = thread;
    if (f != null) LockSupport.unpark(f);
  }

  // --- the flusher thread ------------------------------------------------------------

  /** Work the flusher starts once premain is over (JFR); with the time it was asked for. */
  private volatile Runnable afterStart;

  private volatile long afterStartAt;

  /**
   * Runs {@code task} on the flusher at its first wake at least one period from now, when
   * the agent's premain has returned and the VM is running the program.
   */
  void afterStart(Runnable task) {
    afterStartAt = Recorder.now();
    afterStart = task;
  }

  private void runAfterStart(long period) {
    Runnable task = afterStart;
    if (task == null || Recorder.now() - afterStartAt < period) return;
    afterStart = null;
    try {
      task.run();
    } catch (Throwable e) {
      rec.fault("start", e);
    }
  }

  void start() {
    Thread t = new Thread(this::run, "willowisp-flusher");
    t.setDaemon(true);
    rec.agentThreads.add(t);
    thread = t;
    t.start();
  }

  private void run() {
    long period = rec.cfg.flushMs * 1_000_000L;
    long started = Recorder.now();
    boolean calibrated = false;
    while (!stopping) {
      LockSupport.parkNanos(this, period);
      flush();
      runAfterStart(period);
      if (!calibrated && Recorder.now() - started > 2_000_000_000L) {
        // the start-up figure was taken interpreted; a compiled hot path is cheaper
        calibrated = true;
        try {
          rec.costNsPerEvent = Math.min(rec.costNsPerEvent, Agent.calibrate(50));
        } catch (Throwable e) {
          rec.fault("calibrate", e);
        }
      }
    }
  }

  /** The last chunk, then the sink closed; after the recorder's sources have finished. */
  void stop() {
    stopping = true;
    flush();
    synchronized (flushLock) {
      sink.close();
    }
  }

  // --- flushing ----------------------------------------------------------------------

  /** Writes what the rings hold as one chunk. Any thread; never throws. */
  void flush() {
    try {
      synchronized (flushLock) {
        flushLocked();
      }
    } catch (Throwable e) {
      rec.fault("flush", e);
    }
  }

  private void flushLocked() throws IOException {
    long t0 = Recorder.now();
    Wtrace.Events ev = scratch;
    ev.n = 0;
    if (ev.kind.length > (1 << 20)) scratch = ev = new Wtrace.Events(1024); // after a burst
    List<Ring> drops = new ArrayList<>();
    rec.drainRings(ev, drops);
    int nRing = ev.n;
    vunits.n = 0;
    sink.takeCarriedUnits(vunits);
    byte[] kinds = ev.kind;
    for (int i = 0; i < nRing; i++) {
      if (kinds[i] == (byte) Kinds.VCREATE) { // a virtual thread's start: its unit record
        vunits.add((int) ev.arg[i], ev.res[i] & 0xffffffffL, ev.unit[i]);
        kinds[i] = (byte) Kinds.UNIT_CREATE;
        ev.res[i] = 0;
      }
    }
    // after the rings: any event drained above was recorded after its unit was put here
    rec.takeVOverflow(vunits);
    droppedTotal += sink.sayLost(ev, t0); // events of chunks the file system refused
    for (Ring r : drops) {
      long d = r.dropped - r.droppedReported;
      r.droppedReported += d;
      droppedTotal += d;
      ev.add(Kinds.AGENT_DROP, r.unitId, t0, 0, d, 0);
    }
    List<Wtrace.Record> recs = new ArrayList<>();
    ChunkSink.Next next = sink.prepare(t0);
    // nowhere to write (no segment could be opened, or none after the last one): this
    // chunk's events are counted and lost, said at exit on a full disk
    if (next == ChunkSink.Next.NOWHERE) {
      events += ev.n;
      sink.discard(nRing);
      rec.pending.clear();
      return;
    }
    // a new segment starts with the process record; so does the chunk after a refused one
    // ... and a process record again when the runtime's units grew (runtime_units)
    boolean grew = rec.takeRuntimeUnitsGrew();
    if (next == ChunkSink.Next.NEW_SEGMENT || sink.takeProcessDue() || grew) {
      recs.add(processRecord());
      anchorDue = true;
    }
    sink.takeCarried(recs);
    for (Wtrace.Record r; (r = rec.pending.poll()) != null; ) recs.add(r);
    if (anchorDue || t0 - lastAnchor >= 1_000_000_000L) {
      anchorDue = false;
      lastAnchor = t0;
      long[] pair = clockPair();
      ev.add(Kinds.CLOCK_ANCHOR, 0, pair[0], 0, pair[1] + rec.cfg.clockOffsetNs, 0);
    }
    if (ev.n == 0 && recs.isEmpty() && vunits.n == 0) return;
    eventsPublished = events + ev.n + (ev.n > 0 ? 1 : 0);
    droppedPublished = droppedTotal;
    if (ev.n > 0) ev.add(Kinds.AGENT_FLUSH, 0, t0, 0, ev.n, 0);
    events += ev.n;
    recs.add(statsRecord());
    ev.firstSeq = seq;
    seq += ev.n;
    long tc = Recorder.now();
    byte[] chunk = Wtrace.chunk(recs, vunits, ev, codecFor(ev.n, t0));
    if (ev.n >= 256) serializeNsPerEvent = (Recorder.now() - tc) / ev.n;
    sink.write(chunk, recs, vunits, ev, nRing);
  }

  /** The codec of a chunk of n events (WILLOWISP_JAVA_CODEC; auto: by the event rate). */
  private int codecFor(int n, long t0) {
    long since = t0 - lastFlush;
    lastFlush = t0;
    return chooseCodec(rec.cfg.codec, n, since, rec.cfg.flushMs);
  }

  /**
   * {@code none} and {@code deflate} as set; {@code auto}: deflate when the chunk's events
   * per second, over at least one flush period since the previous chunk (a ring filling up
   * wakes the flusher early: the same rate over a shorter time), are at most
   * {@link #AUTO_DEFLATE_EVENTS_PER_S}.
   */
  static int chooseCodec(String codec, int n, long sinceNs, int flushMs) {
    switch (codec) {
      case "none":
        return Wtrace.CODEC_NONE;
      case "deflate":
        return Wtrace.CODEC_DEFLATE;
      default:
        long window = Math.max(sinceNs, flushMs * 1_000_000L);
        return (double) n * 1e9 / window <= AUTO_DEFLATE_EVENTS_PER_S ? Wtrace.CODEC_DEFLATE : Wtrace.CODEC_NONE;
    }
  }

  // --- the chunks the sink asks for -------------------------------------------------------

  /** What {@link ChunkSink} needs framed or counted; every call holds flushLock. */
  private final class Framing implements ChunkSink.Framer {
    @Override
    public byte[] fallbackChunk(String why) {
      List<Wtrace.Record> recs = new ArrayList<>();
      recs.add(processRecord());
      Wtrace.Events ev = new Wtrace.Events(16);
      long[] pair = clockPair();
      ev.add(Kinds.CLOCK_ANCHOR, 0, pair[0], 0, pair[1] + rec.cfg.clockOffsetNs, 0);
      if (why != null) { // null: the collector said bye, an orderly fallback, no fault
        rec.faults.incrementAndGet();
        int id = rec.faultIds.incrementAndGet();
        recs.add(new Wtrace.Record(Wtrace.R_FAULT, id).put("message", Recorder.cut(why, 500)).put("where", "stream"));
        ev.add(Kinds.AGENT_FAULT, 0, Recorder.now(), 0, id, 0);
      }
      ev.firstSeq = seq;
      seq += ev.n;
      events += ev.n;
      return Wtrace.chunk(recs, ev, Wtrace.CODEC_DEFLATE);
    }

    @Override
    public void unsay(long drops) {
      droppedTotal -= drops; // added again when the drop events are written
    }

    /**
     * The news of a loss, written in the room the reserve left: the process record, a clock
     * anchor, the pending faults, one agent.drop per unit with lost events and the stats. No
     * program events (they may not fit): they wait for the next flush.
     */
    @Override
    public boolean writeNews(Map<Integer, Long> lostByUnit, List<Wtrace.Record> carry, ChunkSink.Append out) {
      List<Wtrace.Record> recs = new ArrayList<>();
      recs.add(processRecord());
      List<Wtrace.Record> faultRecs = new ArrayList<>();
      for (Wtrace.Record r; (r = rec.pending.poll()) != null; ) {
        if (r.type == Wtrace.R_FAULT) faultRecs.add(r);
        else carry.add(r); // before any record queued later: the order is kept
      }
      recs.addAll(faultRecs);
      Wtrace.Events ev = new Wtrace.Events(16 + lostByUnit.size());
      long[] pair = clockPair();
      ev.add(Kinds.CLOCK_ANCHOR, 0, pair[0], 0, pair[1] + rec.cfg.clockOffsetNs, 0);
      long sum = 0;
      for (Map.Entry<Integer, Long> e : lostByUnit.entrySet()) {
        ev.add(Kinds.AGENT_DROP, e.getKey(), pair[0], 0, e.getValue(), 0);
        sum += e.getValue();
      }
      droppedTotal += sum;
      recs.add(statsRecord());
      ev.firstSeq = seq;
      try {
        out.write(Wtrace.chunk(recs, ev, Wtrace.CODEC_DEFLATE));
      } catch (Throwable e) { // not even that fits: the line at exit says it
        droppedTotal -= sum;
        carry.addAll(faultRecs);
        return false;
      }
      seq += ev.n;
      lastAnchor = pair[0];
      anchorDue = false;
      droppedPublished = droppedTotal;
      return true;
    }

    @Override
    public void fault(String where, String message) {
      rec.fault(where, message);
    }

    @Override
    public void countFault() {
      rec.faults.incrementAndGet();
    }

    @Override
    public boolean stopping() {
      return stopping;
    }
  }

  /**
   * A (monotonic, wall) pair read back to back — the wall reading bracketed by two
   * monotonic ones, the tightest of three tries — so that anchors of processes on one host
   * agree within microseconds (the analyzer merges clocks that agree within 50 µs). Re-read
   * at every anchor, so anchors follow wall-clock steps.
   */
  static long[] clockPair() {
    long bestWidth = Long.MAX_VALUE;
    long[] best = new long[2];
    for (int i = 0; i < 3; i++) {
      long before = System.nanoTime();
      Instant w = Instant.now();
      long after = System.nanoTime();
      if (after - before < bestWidth) {
        bestWidth = after - before;
        best[0] = before + (after - before) / 2;
        best[1] = w.getEpochSecond() * 1_000_000_000L + w.getNano();
      }
    }
    return best;
  }

  /** Who this process is: the first record of every segment (and after a refused chunk). */
  private Wtrace.Record processRecord() {
    return Identity.record(rec.cfg, rec.processId, rec.pid, sink.segment())
        .put("runtime_units", rec.runtimeUnitsText());
  }

  private Wtrace.Record statsRecord() {
    Wtrace.Record s =
        new Wtrace.Record(Wtrace.R_STATS, 0)
            .put("events", events)
            .put("dropped", droppedTotal)
            .put("faults", rec.faults.get())
            .put("cost_ns_per_event", rec.costNsPerEvent)
            .put("by_boundary", Boundaries.byBoundaryJson(rec));
    rec.statsExtra.forEach(s::put);
    long handoffDropped = HandOffs.DROPPED.get();
    if (handoffDropped > 0) s.put("handoff_dropped", handoffDropped);
    return s;
  }

  // --- what other threads may read ---------------------------------------------------

  /**
   * Where chunks go now (ctl status's {@code sink}). Any thread; it waits for a flush in
   * progress, since the sink is the flusher's alone.
   */
  Map<String, Object> sinkStatus() {
    synchronized (flushLock) {
      return sink.status();
    }
  }

  /** Events flushed so far (approximate; any thread). */
  long eventsSoFar() {
    return eventsPublished;
  }

  long droppedSoFar() {
    return droppedPublished;
  }
}
