package dev.willowisp.agent;

import java.io.IOException;
import java.security.SecureRandom;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

/**
 * The process's recorder: ids for units, resources and locations, one {@link Ring} per
 * thread, and the flusher that turns them into {@code .wtrace} chunks.
 *
 * <p>Hot path: a hook looks up its thread's ring (a ThreadLocal) and appends one row; ids
 * of new units, resources and locations come from concurrent maps and their records are
 * queued. The flusher thread wakes every {@code WILLOWISP_FLUSH_MS} (50 ms; sooner when a
 * ring fills up), drains the rings first and the record queue second (so every record an
 * event refers to is in the same chunk or an earlier one), adds anchors, drops and stats,
 * and hands one framed chunk to its {@link ChunkSink}, which decides where it goes (a
 * segment file or the collector's stream) and what a full disk costs. Nothing here throws
 * into the program: failures are counted as faults and, once nothing can be written, events
 * are simply counted.
 */
public final class Recorder {
  static volatile Recorder INSTANCE;
  static final String AGENT_VERSION = "0.1.0";
  static final int MAX_FAULT_RECORDS = 100;
  /**
   * WILLOWISP_JAVA_CODEC=auto: chunks are deflated while the recording's event rate stays at
   * or below this (deflate costs ~100 ns per event: at this rate ~1 % of one CPU); a faster
   * recording (a lock-heavy program) stores its chunks as {@code none} (29 bytes per event),
   * so the agent's CPU does not grow with the rate of lock use by that much.
   */
  static final long AUTO_DEFLATE_EVENTS_PER_S = 100_000;

  final Config cfg;
  final String processId;
  final long pid;
  private final long wallMinusMono;

  private final AtomicInteger unitIds = new AtomicInteger();
  private final AtomicInteger resIds = new AtomicInteger();
  private final AtomicInteger locIds = new AtomicInteger();
  private final AtomicInteger faultIds = new AtomicInteger();
  final AtomicLong faults = new AtomicLong();
  /** Units of platform threads (and of threads not known to be virtual) by thread id. */
  private final ConcurrentHashMap<Long, Integer> unitByTid = new ConcurrentHashMap<>();
  /** Units of virtual threads by thread id (millions: no object per thread). */
  final TidUnits vunitByTid = new TidUnits();
  private final ConcurrentHashMap<Long, LockRes> lockByKey = new ConcurrentHashMap<>();
  private final ConcurrentHashMap<String, Integer> resByName = new ConcurrentHashMap<>();
  private final ConcurrentHashMap<String, Integer> locByKey = new ConcurrentHashMap<>();
  final ConcurrentHashMap<Long, Ring> ringByTid = new ConcurrentHashMap<>();
  private final ConcurrentLinkedQueue<Wtrace.Record> pending = new ConcurrentLinkedQueue<>();
  private final ConcurrentLinkedQueue<Ring> rings = new ConcurrentLinkedQueue<>();
  private final ThreadLocal<Ring> ring = ThreadLocal.withInitial(this::newRing);
  /** Threads the agent runs itself; their rings are marked agent rings. */
  final java.util.Set<Thread> agentThreads = ConcurrentHashMap.newKeySet();

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
  private volatile Thread flusher;
  private volatile boolean stopping;
  long costNsPerEvent;
  /** The flusher's measured cost per event (encoding and compression), ns; flusher writes. */
  volatile long serializeNsPerEvent;
  private volatile long eventsPublished;
  private volatile long droppedPublished;
  /** Extra attributes for the stats record (JVM facts the sampler found); any thread. */
  final ConcurrentHashMap<String, Long> statsExtra = new ConcurrentHashMap<>();

  Recorder(Config cfg) {
    this.cfg = cfg;
    this.processId = randomHex(16);
    this.pid = ProcessHandle.current().pid();
    Instant now = Instant.now();
    long mono = System.nanoTime();
    this.wallMinusMono = now.getEpochSecond() * 1_000_000_000L + now.getNano() - mono;
    this.sink = new ChunkSink(cfg, processId, pid, agentThreads, new Framing());
  }

  static String randomHex(int bytes) {
    byte[] b = new byte[bytes];
    new SecureRandom().nextBytes(b);
    StringBuilder s = new StringBuilder();
    for (byte x : b) s.append(String.format("%02x", x & 0xff));
    return s.toString();
  }

  // --- time --------------------------------------------------------------------------

  static long now() {
    return System.nanoTime();
  }

  /** Monotonic ns for a wall-clock instant (JFR's timestamps). */
  long monoOf(Instant t) {
    return t.getEpochSecond() * 1_000_000_000L + t.getNano() - wallMinusMono;
  }

  // --- rings -------------------------------------------------------------------------

  private Ring newRing() {
    Thread t = Thread.currentThread();
    // the agent's own threads and JFR's record for others, never their own lock use
    boolean agent = agentThreads.contains(t) || isAgentName(t.getName());
    int u = agent ? 0 : unitFor(t);
    // JFR's handler thread writes in bursts (a whole JFR flush at once: every virtual
    // thread's start and end, say) faster than the flusher, woken at three quarters, drains
    int cap = Threads.isVirtual(t) ? 512 : agent && t.getName().startsWith("willowisp-jfr") ? 8 * cfg.ringEvents : cfg.ringEvents;
    Ring r = new Ring(cap, u, t, agent);
    rings.add(r);
    if (!agent) ringByTid.put(t.getId(), r);
    // a thread started inside a boundary instance: inside it from here to its end
    if (!agent && Spawns.any()) Hooks.threadBegins(this, r, t.getId());
    return r;
  }

  /** JVM service threads whose lock use is the runtime's own, not the program's. */
  private static final java.util.Set<String> JVM_THREADS =
      java.util.Set.of(
          "DestroyJavaVM", "Reference Handler", "Finalizer", "Signal Dispatcher",
          "Common-Cleaner", "Notification Thread", "Attach Listener");

  /** Threads of the agent, of JFR and of the JVM itself (their waits are not the program's). */
  static boolean isAgentName(String name) {
    return name != null
        && (name.startsWith("JFR ") || name.startsWith("willowisp-") || JVM_THREADS.contains(name));
  }

  /** The calling thread's ring. */
  Ring ring() {
    return ring.get();
  }

  /** Records one event from the calling thread, for unit u. */
  void emit(Ring r, int kind, int u, long t, int res, long arg, int loc) {
    if (!r.add(kind, u, t, res, arg, loc)) wake();
  }

  /** Records an event about unit u from the calling (agent) thread. */
  void emitFor(int kind, int u, long t, int res, long arg, int loc) {
    Ring r = ring();
    boolean was = r.busy;
    r.busy = true;
    try {
      emit(r, kind, u, t, res, arg, loc);
    } finally {
      r.busy = was;
    }
  }

  /**
   * A ring any thread may write to under its lock, for rare events about a unit from a
   * thread that should not make a ring of its own for them (an early thread's end: {@link
   * EarlyThreads}). Owned by the flusher thread, so it lives as long as the recording;
   * created on first use. Guarded by itself once made (sharedLock before).
   */
  private Ring shared;

  private final Object sharedLock = new Object();

  /** Records an event about unit u on the shared ring (see {@link #shared}); any thread. */
  void emitShared(int kind, int u, long t, int res, long arg, int loc) {
    synchronized (sharedLock) {
      Ring s = shared;
      if (s == null) {
        Thread f = flusher;
        s = shared = new Ring(1024, 0, f != null ? f : Thread.currentThread(), true);
        rings.add(s);
      }
      emit(s, kind, u, t, res, arg, loc);
    }
  }

  void wake() {
    Thread f = flusher;
    if (f != null) LockSupport.unpark(f);
  }

  // --- units, resources, locations ----------------------------------------------------

  /** The unit of a Java thread, defining it on first sight. */
  int unitFor(Thread t) {
    return unitFor(t.getId(), t.getName(), Threads.isVirtual(t));
  }

  /**
   * A platform thread about to start (from inside a boundary instance): its unit, with the
   * starter's unit as parent.
   */
  int startedUnit(Thread t, int parent) {
    long tid = t.getId();
    Integer had = unitByTid.get(tid);
    if (had == null) return defineUnit(tid, t.getName(), false, parent);
    if (parent != 0) updateUnit(had, "parent", (long) parent);
    return had;
  }

  /**
   * A virtual thread about to start, from its starter's ring r: its unit (with the starter
   * as parent) and the starter's unit.create at the line loc. An unnamed thread (the usual
   * case) costs one map entry and one ring row (Kinds.VCREATE): the flusher writes its unit
   * record from that row, in columns (Wtrace.VUnits), so nothing is allocated per start
   * but the map's entry. When the ring is full (the unit.create is dropped and counted) or
   * the thread has a name, the unit record is queued as any other (units are never dropped).
   */
  void virtualStart(Ring r, Thread t, int loc) {
    long tid = t.getId();
    long now = now();
    int id = unitIds.incrementAndGet();
    int had = vunitByTid.putIfAbsent(tid, id);
    if (had != 0) { // something saw it first (rare): give it its parent
      if (r.unitId != 0) updateUnit(had, "parent", (long) r.unitId);
      emit(r, Kinds.UNIT_CREATE, r.unitId, now, 0, had, loc);
      return;
    }
    String name = t.getName();
    boolean plain = tid > 0 && tid <= Integer.MAX_VALUE && (name == null || name.isEmpty());
    if (plain) {
      int got = r.offer(Kinds.VCREATE, r.unitId, now, (int) tid, id, loc);
      if (got > 0) wake();
      if (got >= 0) return;
      // a full ring (starts faster than the flusher drains): the unit.create is dropped
      // and counted, the unit kept in columns (no allocation) while there is room
      r.dropped++;
      synchronized (vOverflowLock) {
        if (vOverflow.n < MAX_V_OVERFLOW) {
          vOverflow.add(id, tid, r.unitId);
          return;
        }
      }
      pending.add(unitRecord(id, tid, name, true, r.unitId));
      return;
    }
    pending.add(unitRecord(id, tid, name, true, r.unitId));
    emit(r, Kinds.UNIT_CREATE, r.unitId, now, 0, id, loc);
  }

  /** Virtual threads' units whose starter's ring was full; taken by the flusher. */
  private final Object vOverflowLock = new Object();

  private Wtrace.VUnits vOverflow = new Wtrace.VUnits();
  /** The flusher's spare for vOverflow (swapped under vOverflowLock). */
  private Wtrace.VUnits vSpare = new Wtrace.VUnits();

  static final int MAX_V_OVERFLOW = 1 << 18;

  /**
   * Forgets a virtual thread's unit once it has ended (JFR's VirtualThreadEnd, its last
   * event): thread ids are never reused, and a program may start millions of them.
   */
  void forgetUnit(long tid) {
    if (!vunitByTid.remove(tid)) unitByTid.remove(tid);
  }

  /**
   * The unit of a thread known by id and name (JFR, MXBean; virtual when known to be):
   * a virtual thread's is looked up first, since JFR and MXBean data do not say.
   */
  int unitFor(long tid, String name, boolean virtual) {
    int v = vunitByTid.get(tid);
    if (v != 0) return v;
    Integer u = unitByTid.get(tid);
    if (u != null) return u;
    return defineUnit(tid, name, virtual, 0);
  }

  private int defineUnit(long tid, String name, boolean virtual, int parent) {
    if (virtual) {
      int id = unitIds.incrementAndGet();
      int had = vunitByTid.putIfAbsent(tid, id);
      if (had != 0) return had; // defined meanwhile (the id is left unused)
      pending.add(unitRecord(id, tid, name, true, parent));
      return id;
    }
    int[] made = {0};
    int u =
        unitByTid.computeIfAbsent(
            tid,
            k -> {
              made[0] = unitIds.incrementAndGet();
              return made[0];
            });
    if (made[0] != 0) pending.add(unitRecord(u, tid, name, virtual, parent));
    return u;
  }

  private static Wtrace.Record unitRecord(int u, long tid, String name, boolean virtual, int parent) {
    return new Wtrace.Record(Wtrace.R_UNIT, u)
        .put("kind", virtual ? "virtual-thread" : "thread")
        .put("name", name == null || name.isEmpty() ? (virtual ? "virtual-" + tid : "Thread-" + tid) : name)
        .put("parent", (long) parent)
        .put("java_tid", tid);
  }

  /** Updates a unit's attributes (a later record merges into the earlier one). */
  void updateUnit(int u, String key, long value) {
    pending.add(new Wtrace.Record(Wtrace.R_UNIT, u).put(key, value));
  }

  void updateUnit(int u, String key, String value) {
    pending.add(new Wtrace.Record(Wtrace.R_UNIT, u).put(key, value));
  }

  /** A new resource; attrs alternate key, value (String or Long). */
  int newResource(String kind, String name, Object... attrs) {
    int id = resIds.incrementAndGet();
    Wtrace.Record rec = new Wtrace.Record(Wtrace.R_RESOURCE, id).put("kind", kind).put("name", name);
    for (int i = 0; i + 1 < attrs.length; i += 2) {
      Object v = attrs[i + 1];
      if (v instanceof Number) rec.put((String) attrs[i], ((Number) v).longValue());
      else rec.put((String) attrs[i], String.valueOf(v));
    }
    pending.add(rec);
    return id;
  }

  /** The join resources of joined units (a unit joined twice names one resource). */
  private final java.util.concurrent.ConcurrentHashMap<Integer, Integer> joinRes =
      new java.util.concurrent.ConcurrentHashMap<>();

  /** The {@code join} resource of unit u (its attribute {@code unit}), made on first use. */
  int joinResource(int u, String threadName) {
    Integer id = joinRes.get(u);
    if (id != null) return id;
    int made = newResource("join", "end of " + threadName, "unit", (long) u);
    if (joinRes.size() >= 65_536) joinRes.clear(); // bounded: a unit joined again gets another
    Integer had = joinRes.putIfAbsent(u, made);
    return had != null ? had : made;
  }

  /** One resource per name (sleep, park, data): created on first use. */
  int namedResource(String kind, String name, Object... attrs) {
    String key = kind + "\u0000" + name;
    Integer id = resByName.get(key);
    if (id != null) return id;
    synchronized (resByName) {
      id = resByName.get(key);
      if (id == null) {
        id = newResource(kind, name, attrs);
        resByName.put(key, id);
      }
      return id;
    }
  }

  static long lockKey(String className, int identityHash) {
    return ((long) className.hashCode() << 32) | (identityHash & 0xffffffffL);
  }

  /** A lock resource: its id and how often hooks saw it taken (racy; for sampling only). */
  static final class LockRes {
    final int id;
    int uses;
    /** A hook has looked for the field that holds it (LockNames): once. */
    volatile boolean named;

    LockRes(int id) {
      this.id = id;
    }
  }

  /**
   * The resource of a lock object identified by class name and identity hash: the same key
   * from a bytecode hook (the object itself) and from MXBean data (LockInfo).
   */
  LockRes lockRes(String className, int identityHash, String kind) {
    long key = lockKey(className, identityHash);
    LockRes lr = lockByKey.get(key);
    if (lr != null) return lr;
    synchronized (lockByKey) {
      lr = lockByKey.get(key);
      if (lr == null) {
        String name = className + "@0x" + Integer.toHexString(identityHash);
        lr = new LockRes(newResource(kind, name, "identity_hash", (long) identityHash));
        lockByKey.put(key, lr);
      }
      return lr;
    }
  }

  /**
   * Names a lock after the static field that holds it (a later record of the same resource
   * replaces the first): {@code checking}, not {@code ReentrantLock$NonfairSync@0x…}.
   */
  void renameLock(LockRes lr, String kind, String name, int identityHash) {
    pending.add(
        new Wtrace.Record(Wtrace.R_RESOURCE, lr.id)
            .put("kind", kind)
            .put("name", name)
            .put("identity_hash", (long) identityHash));
  }

  int lockResource(String className, int identityHash, String kind) {
    return lockRes(className, identityHash, kind).id;
  }

  /** A location id for (file, line, func); 0 for no line. */
  int location(String file, int line, String func) {
    if (file == null || line <= 0) return 0;
    String key = file + ":" + line + ":" + func;
    Integer id = locByKey.get(key);
    if (id != null) return id;
    synchronized (locByKey) {
      id = locByKey.get(key);
      if (id == null) {
        id = locIds.incrementAndGet();
        pending.add(new Wtrace.Record(Wtrace.R_LOCATION, id).put("file", file).put("line", (long) line).put("func", func));
        locByKey.put(key, id);
      }
      return id;
    }
  }

  /** {@code com/x/Foo.java}: the package path and the source file, or javac's convention. */
  static String sourcePath(String className, String fileName) {
    String pkg = "";
    int dot = className.lastIndexOf('.');
    if (dot >= 0) pkg = className.substring(0, dot).replace('.', '/') + "/";
    if (fileName == null || fileName.isEmpty()) {
      String simple = dot >= 0 ? className.substring(dot + 1) : className;
      int d = simple.indexOf('$');
      fileName = (d > 0 ? simple.substring(0, d) : simple) + ".java";
    }
    return pkg + fileName;
  }

  // --- faults ------------------------------------------------------------------------

  /** Counts and records an error inside the agent; never throws. */
  void fault(String where, Throwable err) {
    fault(where, err == null ? "error" : err.getClass().getName() + ": " + err.getMessage());
  }

  void fault(String where, String message) {
    try {
      faults.incrementAndGet();
      int id = faultIds.incrementAndGet();
      if (id > MAX_FAULT_RECORDS) return;
      String line = message == null ? "" : message.replace('\n', ' ');
      if (line.length() > 500) line = line.substring(0, 500);
      pending.add(new Wtrace.Record(Wtrace.R_FAULT, id).put("message", line).put("where", where));
      Ring r = ring();
      r.add(Kinds.AGENT_FAULT, r.unitId, now(), 0, id, 0);
    } catch (Throwable ignored) {
      // the fault path itself must never throw
    }
  }

  // --- flushing ----------------------------------------------------------------------

  /** Work the flusher starts once premain is over (JFR); with the time it was asked for. */
  private volatile Runnable afterStart;

  private volatile long afterStartAt;

  /**
   * Runs {@code task} on the flusher at its first wake at least one period from now, when
   * the agent's premain has returned and the VM is running the program.
   */
  void afterStart(Runnable task) {
    afterStartAt = now();
    afterStart = task;
  }

  private void runAfterStart(long period) {
    Runnable task = afterStart;
    if (task == null || now() - afterStartAt < period) return;
    afterStart = null;
    try {
      task.run();
    } catch (Throwable e) {
      fault("start", e);
    }
  }

  void startFlusher() {
    Thread t = new Thread(this::runFlusher, "willowisp-flusher");
    t.setDaemon(true);
    agentThreads.add(t);
    flusher = t;
    t.start();
  }

  private void runFlusher() {
    long period = cfg.flushMs * 1_000_000L;
    long started = now();
    boolean calibrated = false;
    while (!stopping) {
      LockSupport.parkNanos(this, period);
      flush();
      runAfterStart(period);
      if (!calibrated && now() - started > 2_000_000_000L) {
        // the start-up figure was taken interpreted; a compiled hot path is cheaper
        calibrated = true;
        try {
          costNsPerEvent = Math.min(costNsPerEvent, Agent.calibrate(50));
        } catch (Throwable e) {
          fault("calibrate", e);
        }
      }
    }
  }

  void stop() {
    try {
      JfrEvents jfr = JfrEvents.active;
      // the exit advice has collected JFR's last events already (finish runs once); without
      // it, a dump here could race JFR's own shutdown hook: wait for the stream instead
      JfrEvents.markExiting();
      if (jfr != null && Hooks.exitHooked) jfr.finish(5000);
      else if (jfr != null) jfr.awaitNextFlush(3000);
    } catch (Throwable e) {
      fault("stop", e);
    }
    stopping = true;
    flush();
    synchronized (flushLock) {
      sink.close();
    }
  }

  /** Writes what the rings hold as one chunk. Any thread; never throws. */
  void flush() {
    try {
      synchronized (flushLock) {
        flushLocked();
      }
    } catch (Throwable e) {
      fault("flush", e);
    }
  }

  private void flushLocked() throws IOException {
    long t0 = now();
    Wtrace.Events ev = scratch;
    ev.n = 0;
    if (ev.kind.length > (1 << 20)) scratch = ev = new Wtrace.Events(1024); // after a burst
    List<Ring> drops = new ArrayList<>();
    for (Iterator<Ring> it = rings.iterator(); it.hasNext(); ) {
      Ring r = it.next();
      boolean gone = r.ownerGone();
      r.drainTo(ev);
      if (r.dropped != r.droppedReported) drops.add(r);
      if (gone && r.dropped == r.droppedReported) {
        it.remove();
        ringByTid.remove(r.tid, r);
      }
    }
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
    Wtrace.VUnits over;
    synchronized (vOverflowLock) {
      over = vOverflow;
      if (over.n > 0) {
        vOverflow = vSpare;
        vSpare = over;
      }
    }
    if (over.n > 0) {
      vunits.addAll(over);
      over.n = 0;
    }
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
      pending.clear();
      return;
    }
    // a new segment starts with the process record; so does the chunk after a refused one
    if (next == ChunkSink.Next.NEW_SEGMENT || sink.takeProcessDue()) {
      recs.add(processRecord());
      anchorDue = true;
    }
    sink.takeCarried(recs);
    for (Wtrace.Record r; (r = pending.poll()) != null; ) recs.add(r);
    if (anchorDue || t0 - lastAnchor >= 1_000_000_000L) {
      anchorDue = false;
      lastAnchor = t0;
      long[] pair = clockPair();
      ev.add(Kinds.CLOCK_ANCHOR, 0, pair[0], 0, pair[1] + cfg.clockOffsetNs, 0);
    }
    if (ev.n == 0 && recs.isEmpty() && vunits.n == 0) return;
    eventsPublished = events + ev.n + (ev.n > 0 ? 1 : 0);
    droppedPublished = droppedTotal;
    if (ev.n > 0) ev.add(Kinds.AGENT_FLUSH, 0, t0, 0, ev.n, 0);
    events += ev.n;
    recs.add(statsRecord());
    ev.firstSeq = seq;
    seq += ev.n;
    long tc = now();
    byte[] chunk = Wtrace.chunk(recs, vunits, ev, codecFor(ev.n, t0));
    if (ev.n >= 256) serializeNsPerEvent = (now() - tc) / ev.n;
    sink.write(chunk, recs, vunits, ev, nRing);
  }

  /** The codec of a chunk of n events (WILLOWISP_JAVA_CODEC; auto: by the event rate). */
  private int codecFor(int n, long t0) {
    long since = t0 - lastFlush;
    lastFlush = t0;
    return chooseCodec(cfg.codec, n, since, cfg.flushMs);
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
      faults.incrementAndGet();
      int id = faultIds.incrementAndGet();
      List<Wtrace.Record> recs = new ArrayList<>();
      recs.add(processRecord());
      recs.add(new Wtrace.Record(Wtrace.R_FAULT, id).put("message", cut(why, 500)).put("where", "stream"));
      Wtrace.Events ev = new Wtrace.Events(16);
      long[] pair = clockPair();
      ev.add(Kinds.CLOCK_ANCHOR, 0, pair[0], 0, pair[1] + cfg.clockOffsetNs, 0);
      ev.add(Kinds.AGENT_FAULT, 0, now(), 0, id, 0);
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
      for (Wtrace.Record r; (r = pending.poll()) != null; ) {
        if (r.type == Wtrace.R_FAULT) faultRecs.add(r);
        else carry.add(r); // before any record queued later: the order is kept
      }
      recs.addAll(faultRecs);
      Wtrace.Events ev = new Wtrace.Events(16 + lostByUnit.size());
      long[] pair = clockPair();
      ev.add(Kinds.CLOCK_ANCHOR, 0, pair[0], 0, pair[1] + cfg.clockOffsetNs, 0);
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
      Recorder.this.fault(where, message);
    }

    @Override
    public void countFault() {
      faults.incrementAndGet();
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
    return Identity.record(cfg, processId, pid, sink.segment());
  }

  private Wtrace.Record statsRecord() {
    Wtrace.Record s =
        new Wtrace.Record(Wtrace.R_STATS, 0)
            .put("events", events)
            .put("dropped", droppedTotal)
            .put("faults", faults.get())
            .put("cost_ns_per_event", costNsPerEvent)
            .put("by_boundary", Boundaries.byBoundaryJson(this));
    statsExtra.forEach(s::put);
    long handoffDropped = HandOffs.DROPPED.get();
    if (handoffDropped > 0) s.put("handoff_dropped", handoffDropped);
    return s;
  }

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

  static String cut(String s, int n) {
    return s.length() <= n ? s : s.substring(0, n);
  }
}
