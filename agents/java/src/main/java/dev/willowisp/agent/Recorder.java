package dev.willowisp.agent;

import java.security.SecureRandom;
import java.time.Instant;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The process's recorder, the producing half of the recording: ids for units, resources and
 * locations, one {@link Ring} per thread, the queue of records those ids need, and the
 * agent's own faults. Its {@link Flusher} is the consuming half: it turns what is recorded
 * here into {@code .wtrace} chunks (the two are split so that what the program's threads
 * touch and what only a flush touches are separate, each with its own invariants).
 *
 * <p>Hot path: a hook looks up its thread's ring (a ThreadLocal) and appends one row; ids
 * of new units, resources and locations come from concurrent maps and their records are
 * queued. A ring that fills up wakes the flusher early. Nothing here throws into the
 * program: failures are counted as faults.
 */
public final class Recorder {
  static volatile Recorder INSTANCE;
  static final String AGENT_VERSION = "0.1.0";
  static final int MAX_FAULT_RECORDS = 100;

  final Config cfg;
  final String processId;
  final long pid;
  private final long wallMinusMono;

  private final AtomicInteger unitIds = new AtomicInteger();
  private final AtomicInteger resIds = new AtomicInteger();
  private final AtomicInteger locIds = new AtomicInteger();
  /** Fault record ids; the flusher takes one for a fault it frames itself. */
  final AtomicInteger faultIds = new AtomicInteger();
  final AtomicLong faults = new AtomicLong();
  /** Units of platform threads (and of threads not known to be virtual) by thread id. */
  private final ConcurrentHashMap<Long, Integer> unitByTid = new ConcurrentHashMap<>();
  /** Units of virtual threads by thread id (millions: no object per thread). */
  final TidUnits vunitByTid = new TidUnits();
  private final ConcurrentHashMap<Long, LockRes> lockByKey = new ConcurrentHashMap<>();
  private final ConcurrentHashMap<String, Integer> resByName = new ConcurrentHashMap<>();
  private final ConcurrentHashMap<String, Integer> locByKey = new ConcurrentHashMap<>();
  final ConcurrentHashMap<Long, Ring> ringByTid = new ConcurrentHashMap<>();
  /**
   * Records (units, resources, locations, faults) not yet written; any thread adds, only the
   * flusher takes (after draining the rings, so a record is never later than its events).
   */
  final ConcurrentLinkedQueue<Wtrace.Record> pending = new ConcurrentLinkedQueue<>();
  private final ConcurrentLinkedQueue<Ring> rings = new ConcurrentLinkedQueue<>();
  private final ThreadLocal<Ring> ring = ThreadLocal.withInitial(this::newRing);
  /** Threads the agent runs itself; their rings are marked agent rings. */
  final java.util.Set<Thread> agentThreads = ConcurrentHashMap.newKeySet();

  long costNsPerEvent;
  /** Extra attributes for the stats record (JVM facts the sampler found); any thread. */
  final ConcurrentHashMap<String, Long> statsExtra = new ConcurrentHashMap<>();
  /** Writes what is recorded here as chunks; made with the recorder, started by {@link #startFlusher}. */
  final Flusher flusher;

  Recorder(Config cfg) {
    this.cfg = cfg;
    this.processId = randomHex(16);
    this.pid = ProcessHandle.current().pid();
    Instant now = Instant.now();
    long mono = System.nanoTime();
    this.wallMinusMono = now.getEpochSecond() * 1_000_000_000L + now.getNano() - mono;
    this.flusher = new Flusher(this);
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

  /**
   * The runtime's own threads by name: those of {@link #isAgentName}, and two the JVM
   * starts whose events are still recorded (a signal's handler thread starts the program's
   * shutdown hooks: those spawn edges are real) but which are not the program's: {@code
   * SIGTERM handler} (one per signal, started by Signal Dispatcher) and the process reaper.
   */
  static boolean isRuntimeName(String name) {
    return isAgentName(name)
        || name != null
            && (name.startsWith("SIG") && name.endsWith(" handler") || name.equals("process reaper"));
  }

  /**
   * Units of the runtime's own threads (the JVM's, JFR's, the agent's), for the process
   * record's {@code runtime_units}; added to when such a unit is defined, never removed.
   */
  private final java.util.concurrent.ConcurrentSkipListSet<Integer> runtimeUnits =
      new java.util.concurrent.ConcurrentSkipListSet<>();

  /** Set when runtimeUnits grew; the flusher clears it as it writes a process record. */
  private volatile boolean runtimeUnitsGrew;

  /** The runtime's units, comma separated (the process record's {@code runtime_units}). */
  String runtimeUnitsText() {
    StringBuilder b = new StringBuilder();
    for (Integer u : runtimeUnits) b.append(b.length() == 0 ? "" : ",").append(u);
    return b.toString();
  }

  /** Did runtimeUnits grow since the last call? (the flusher's: a process record is due) */
  boolean takeRuntimeUnitsGrew() {
    if (!runtimeUnitsGrew) return false;
    runtimeUnitsGrew = false;
    return true;
  }

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
        Thread f = flusher.thread;
        s = shared = new Ring(1024, 0, f != null ? f : Thread.currentThread(), true);
        rings.add(s);
      }
      emit(s, kind, u, t, res, arg, loc);
    }
  }

  void wake() {
    flusher.wake();
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
    if (made[0] != 0) {
      pending.add(unitRecord(u, tid, name, virtual, parent));
      if (isRuntimeName(name)) {
        runtimeUnits.add(u);
        runtimeUnitsGrew = true;
      }
    }
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

  // --- what the flusher takes (under its lock) ------------------------------------------

  /**
   * Drains every ring into ev, adding to drops the rings with drops not yet reported, and
   * forgets the rings of ended threads once their drops are reported.
   */
  void drainRings(Wtrace.Events ev, List<Ring> drops) {
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
  }

  /** Adds to {@code into} the virtual threads' units that overflowed their starters' rings. */
  void takeVOverflow(Wtrace.VUnits into) {
    Wtrace.VUnits over;
    synchronized (vOverflowLock) {
      over = vOverflow;
      if (over.n > 0) {
        vOverflow = vSpare;
        vSpare = over;
      }
    }
    if (over.n > 0) {
      into.addAll(over);
      over.n = 0;
    }
  }

  // --- the recording's life (the flusher's side: Flusher) ------------------------------

  void startFlusher() {
    flusher.start();
  }

  /** See {@link Flusher#afterStart}. */
  void afterStart(Runnable task) {
    flusher.afterStart(task);
  }

  /** Writes what the rings hold as one chunk. Any thread; never throws. */
  void flush() {
    flusher.flush();
  }

  /** At exit: lets JFR deliver its last events, then the flusher writes the last chunk. */
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
    flusher.stop();
  }

  /** Where chunks go now (see {@link Flusher#sinkStatus}). */
  Map<String, Object> sinkStatus() {
    return flusher.sinkStatus();
  }

  /** Events flushed so far (approximate; any thread). */
  long eventsSoFar() {
    return flusher.eventsSoFar();
  }

  long droppedSoFar() {
    return flusher.droppedSoFar();
  }

  static String cut(String s, int n) {
    return s.length() <= n ? s : s.substring(0, n);
  }
}
