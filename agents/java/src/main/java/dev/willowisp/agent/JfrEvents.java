package dev.willowisp.agent;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import jdk.jfr.EventType;
import jdk.jfr.FlightRecorder;
import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordedFrame;
import jdk.jfr.consumer.RecordedStackTrace;
import jdk.jfr.consumer.RecordedThread;
import jdk.jfr.consumer.RecordingFile;
import jdk.jfr.consumer.RecordingStream;

/**
 * JDK Flight Recorder, streamed in-process ({@code RecordingStream} on the agent's
 * {@code willowisp-jfr} thread), mapped to events as {@code willowisp.ingest.jfr} maps a
 * recording (docs/import.md), so a live run and an imported recording read alike:
 *
 * <ul>
 *   <li>{@code jdk.ThreadStart/End}: unit.create (parent) + unit.start, unit.end;
 *       {@code jdk.VirtualThreadStart/End} (JDK 21+) the same for virtual threads.
 *   <li>{@code jdk.JavaMonitorEnter} (contended {@code synchronized}, ≥ threshold): the
 *       waiter's unit.block(ACQUIRE) at its start; at its end the previous owner's
 *       lock.release, then the waiter's lock.acquired (the release -> acquire edge) and a
 *       zero-length close of its hold (how long it kept the monitor JFR does not say). A
 *       wait the sampler already recorded is not recorded again.
 *   <li>{@code jdk.JavaMonitorWait}: WAIT on the monitor, the notifier's sync.notify, wake.
 *   <li>{@code jdk.ThreadPark} (not on the hooked j.u.c locks or in a Condition's await) and {@code jdk.ThreadSleep}:
 *       WAIT / SLEEP and wake; {@code jdk.VirtualThreadPinned}: unit.run.
 *   <li>{@code jdk.GarbageCollection}: gc.begin (0 young, 1 old) / gc.end on the main thread's unit;
 *       {@code jdk.SafepointBegin} ≥ threshold: gc.begin(-1) / gc.end on it too.
 * </ul>
 *
 * JFR identifies a monitor by the VM's monitor address, not the object's identity hash that
 * the sampler and hooks use; where a JFR event overlaps a wait the sampler recorded, the
 * address is mapped to that resource, otherwise it names its own {@code Class@0xaddr}
 * resource. JFR delivers events about a second after they happen (its flush period).
 */
final class JfrEvents {
  private final Recorder rec;
  private final Sampler sampler;
  private final ConcurrentHashMap<Long, Integer> monitorByAddress = new ConcurrentHashMap<>();
  private final java.util.List<RecordedEvent> pendingMonitors = new java.util.ArrayList<>();
  private long pinned;
  /** Counts the stream's flushes (each delivers what the JVM had buffered); any thread. */
  private final java.util.concurrent.atomic.AtomicLong flushes = new java.util.concurrent.atomic.AtomicLong();
  static volatile JfrEvents active;
  private volatile RecordingStream stream;
  /** Handlers by event type name, for the stream and for the exit's dump. */
  private final java.util.Map<String, Handler> handlers = new ConcurrentHashMap<>();
  /** The latest end time (epoch ns) of an event the stream delivered; guarded by this. */
  private long watermark;
  /** Set at exit: the stream delivers nothing more, the dump does; guarded by this. */
  private boolean handedOver;
  /** finish() has run or is running (it runs once); guarded by this. */
  private boolean finishing;

  JfrEvents(Recorder rec, Sampler sampler) {
    this.rec = rec;
    this.sampler = sampler;
  }

  static void start(Recorder rec, Sampler sampler) {
    JfrEvents j = new JfrEvents(rec, sampler);
    Thread t = new Thread(j::run, "willowisp-jfr");
    t.setDaemon(true);
    rec.agentThreads.add(t);
    t.start();
  }

  /**
   * Held while JFR is being created, and by whoever marks the JVM as exiting: a JFR that
   * starts once the JVM has begun to exit (a short program whose main ended before the
   * flusher's first wake) makes the JVM print errors into the program's stdout ("An attempt
   * was made to start JFR too early..."), so it must either finish starting first or not
   * start at all.
   */
  private static final java.util.concurrent.locks.ReentrantLock STARTING =
      new java.util.concurrent.locks.ReentrantLock();

  /**
   * The JVM is exiting: JFR is not started any more (see {@link #STARTING}); a start in
   * progress is waited for, 3 s at most (an exit is never held longer by the agent).
   */
  static void markExiting() {
    boolean held = false;
    try {
      held = STARTING.tryLock(3, java.util.concurrent.TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    exiting = true;
    if (held) STARTING.unlock();
  }

  private void run() {
    RecordingStream created;
    STARTING.lock();
    try {
      if (exiting) return;
      created = new RecordingStream();
    } finally {
      STARTING.unlock();
    }
    try (RecordingStream rs = created) {
      Duration th = Duration.ofMillis(rec.cfg.jfrThresholdMs);
      String skip = rec.cfg.jfrSkip;
      Set<String> known = new HashSet<>();
      for (EventType et : FlightRecorder.getFlightRecorder().getEventTypes()) known.add(et.getName());
      rs.setMaxAge(Duration.ofSeconds(10));
      rs.setReuse(false); // monitor events are kept until the end of their flush
      rs.enable("jdk.ThreadStart").withStackTrace();
      rs.enable("jdk.ThreadEnd");
      if (!skip.contains("enter")) rs.enable("jdk.JavaMonitorEnter").withThreshold(th).withStackTrace();
      if (!skip.contains("wait")) rs.enable("jdk.JavaMonitorWait").withThreshold(th).withStackTrace();
      if (!skip.contains("park")) rs.enable("jdk.ThreadPark").withThreshold(th).withStackTrace();
      rs.enable("jdk.ThreadSleep").withThreshold(th).withStackTrace();
      rs.enable("jdk.GarbageCollection");
      if (!skip.contains("safepoint")) rs.enable("jdk.SafepointBegin").withThreshold(th);
      on(rs, "jdk.ThreadStart", this::threadStart);
      on(rs, "jdk.ThreadEnd", this::threadEnd);
      on(rs, "jdk.JavaMonitorEnter", this::hold);
      on(rs, "jdk.JavaMonitorWait", this::hold);
      on(rs, "jdk.ThreadPark", this::park);
      on(rs, "jdk.ThreadSleep", this::sleep);
      on(rs, "jdk.GarbageCollection", this::gc);
      on(rs, "jdk.SafepointBegin", this::safepoint);
      if (known.contains("jdk.VirtualThreadStart")) {
        rs.enable("jdk.VirtualThreadStart");
        rs.enable("jdk.VirtualThreadEnd");
        rs.enable("jdk.VirtualThreadPinned").withThreshold(th).withStackTrace();
        on(rs, "jdk.VirtualThreadStart", this::virtualStart);
        on(rs, "jdk.VirtualThreadEnd", this::virtualEnd);
        on(rs, "jdk.VirtualThreadPinned", this::pinned);
      }
      rec.statsExtra.put("jfr_threshold_ms", (long) rec.cfg.jfrThresholdMs);
      rs.onFlush(
          () -> {
            // a flush comes from a running recording: every thread start and end is JFR's
            // from now on (not at the close, which may be of a recording that never ran)
            EarlyThreads.close(rec);
            flushed();
          });
      // JFR's own shutdown hook stops the recording: the stream then delivers what is left
      // and closes, which ends the exit wait as a flush does
      rs.onClose(this::flushed);
      stream = rs;
      active = this;
      // a JVM already exiting does not start JFR (starting it then can block the exit)
      if (exiting) return;
      // no JFR event is older than this: a unit.create before it was not seen by JFR
      rec.statsExtra.put("jfr_start_ns", Recorder.now());
      rs.start();
    } catch (Throwable e) {
      // a JVM that exits while JFR starts may close the recording under the stream: that
      // is the exit, not an agent error (counted in stats.jfr_cut_by_exit)
      if (exiting) rec.statsExtra.put("jfr_cut_by_exit", 1L);
      else rec.fault("jfr", e);
    }
  }

  /** Registers a handler; the stream delivers to it until the exit's hand-over. */
  private void on(RecordingStream rs, String name, Handler h) {
    handlers.put(name, h);
    rs.onEvent(name, e -> deliver(name, e, h));
  }

  /**
   * One event from the stream. Under the lock (uncontended but at exit), so that the exit's
   * hand-over sees exactly which events were handled: their latest end is the watermark.
   */
  private synchronized void deliver(String name, RecordedEvent e, Handler h) {
    if (handedOver) return;
    long end = epochNs(e.getEndTime());
    if (end > watermark) watermark = end;
    guard(name, e, h);
  }

  private synchronized void flushed() {
    if (!handedOver) {
      monitors();
      forgetEnded();
    }
    synchronized (flushes) {
      flushes.incrementAndGet();
      flushes.notifyAll();
    }
  }

  private static long epochNs(Instant t) {
    return t == null ? 0 : t.getEpochSecond() * 1_000_000_000L + t.getNano();
  }

  /**
   * At exit (the agent's shutdown hook): the JFR events the stream has not delivered yet.
   * JFR hands events to a stream only at its flush, about once a second, and its own
   * shutdown hook may close the stream first, so the last second would be lost. Instead,
   * {@code RecordingStream.dump} (JDK 17+) makes the JVM write out its buffers and copies
   * the recording to a file; the stream stops delivering (the hand-over) and the dump's
   * events that end after the last one the stream delivered are handled here. If the
   * recording is already closed, waits (at most {@code maxMs}) for the stream's close.
   */
  void finish(long maxMs) {
    exiting = true;
    RecordingStream rs = stream;
    synchronized (this) {
      if (rs == null || finishing) return;
      finishing = true;
    }
    // on a thread of its own, waited for at most maxMs: JFR calls can block (a recording
    // still starting while the JVM exits holds JFR's lock), and the exit must never hang
    Thread t = new Thread(() -> collectLast(rs, maxMs), "willowisp-jfr-exit");
    t.setDaemon(true);
    rec.agentThreads.add(t);
    t.start();
    try {
      t.join(maxMs);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    if (t.isAlive()) rec.statsExtra.put("jfr_exit_timeout", 1L);
  }

  /** Set when the JVM starts to exit (the exit advice or the shutdown hook); any thread. */
  static volatile boolean exiting;

  private void collectLast(RecordingStream rs, long maxMs) {
    Path tmp = null;
    try {
      tmp = Files.createTempFile("willowisp-jfr-", ".jfr");
      rs.dump(tmp);
    } catch (Throwable e) {
      deleteQuietly(tmp);
      awaitNextFlush(maxMs);
      return;
    }
    long seen;
    synchronized (this) {
      handedOver = true;
      seen = watermark;
    }
    long late = 0;
    try (RecordingFile f = new RecordingFile(tmp)) {
      while (f.hasMoreEvents()) {
        RecordedEvent e = f.readEvent();
        if (epochNs(e.getEndTime()) <= seen) continue;
        Handler h = handlers.get(e.getEventType().getName());
        if (h == null) continue;
        late++;
        guard(e.getEventType().getName(), e, h);
      }
      monitors();
    } catch (Throwable e) {
      rec.fault("jfr exit", e);
    } finally {
      deleteQuietly(tmp);
    }
    rec.statsExtra.put("jfr_exit_events", late);
  }

  private static void deleteQuietly(Path p) {
    try {
      if (p != null) Files.deleteIfExists(p);
    } catch (Throwable ignored) {
      // a temporary file
    }
  }

  /** Waits (at most {@code maxMs}) for the stream's next flush or its close. */
  void awaitNextFlush(long maxMs) {
    long deadline = System.nanoTime() + maxMs * 1_000_000L;
    synchronized (flushes) {
      long seen = flushes.get();
      while (flushes.get() == seen) {
        long left = (deadline - System.nanoTime()) / 1_000_000L;
        if (left <= 0) return;
        try {
          flushes.wait(left);
        } catch (InterruptedException e) {
          return;
        }
      }
    }
  }

  private interface Handler {
    void handle(RecordedEvent e);
  }

  private void guard(String where, RecordedEvent e, Handler h) {
    try {
      RecordedThread th = e.getThread();
      if (th != null && Recorder.isAgentName(th.getJavaName())) return;
      h.handle(e);
    } catch (Throwable err) {
      rec.fault("jfr " + where, err);
    }
  }

  private int unit(RecordedThread t, boolean virtual) {
    if (t == null) return 0;
    long tid = t.getJavaThreadId();
    if (tid <= 0) return 0;
    String name = t.getJavaName();
    return rec.unitFor(tid, name, virtual);
  }

  private long t0(RecordedEvent e) {
    return rec.monoOf(e.getStartTime());
  }

  private long t1(RecordedEvent e) {
    Instant end = e.getEndTime();
    return rec.monoOf(end == null ? e.getStartTime() : end);
  }

  private int loc(RecordedEvent e) {
    RecordedStackTrace st = e.getStackTrace();
    if (st == null) return 0;
    for (RecordedFrame f : st.getFrames()) {
      if (!f.isJavaFrame() || f.getLineNumber() <= 0 || f.getMethod() == null) continue;
      String cls = f.getMethod().getType().getName();
      if (Hooks.isRuntimeClass(cls) || f.getMethod().isHidden()) continue;
      return rec.location(Recorder.sourcePath(cls, null), f.getLineNumber(), cls + "." + f.getMethod().getName());
    }
    return 0;
  }

  private static String topAppClass(RecordedEvent e) {
    RecordedStackTrace st = e.getStackTrace();
    if (st == null) return null;
    for (RecordedFrame f : st.getFrames()) {
      if (f.getMethod() == null) continue;
      String cls = f.getMethod().getType().getName();
      if (!Hooks.isRuntimeClass(cls)) return cls;
    }
    return null;
  }

  private static boolean has(RecordedEvent e, String field) {
    return e.getEventType().getField(field) != null;
  }

  private void threadStart(RecordedEvent e) {
    RecordedThread th = e.getThread("thread");
    if (th == null) th = e.getThread();
    // started before JFR's first flush: the start hook wrote its create and start
    if (th != null && EarlyThreads.startedByHook(th.getJavaThreadId())) return;
    int u = unit(th, false);
    if (u == 0 || u == Agent.mainUnit) return; // main's start is written at premain
    int p = has(e, "parentThread") ? unit(e.getThread("parentThread"), false) : 0;
    long t = t0(e);
    // a thread started inside a boundary instance: the start hook wrote its create
    if (p != 0 && p != u && !Spawns.createdByHook(u)) {
      rec.updateUnit(u, "parent", p);
      rec.emitFor(Kinds.UNIT_CREATE, p, t, 0, u, loc(e));
    }
    rec.emitFor(Kinds.UNIT_START, u, t, 0, p != u ? p : 0, 0);
  }

  private void threadEnd(RecordedEvent e) {
    RecordedThread th = e.getThread("thread");
    if (th == null) th = e.getThread();
    // ended before JFR's first flush: the exit hook wrote its end
    if (th != null && EarlyThreads.endedByHook(th.getJavaThreadId())) return;
    int u = unit(th, false);
    if (u != 0) rec.emitFor(Kinds.UNIT_END, u, t0(e), 0, Kinds.OK, 0);
  }

  private void virtualStart(RecordedEvent e) {
    int u = unit(e.getThread(), true);
    if (u != 0) rec.emitFor(Kinds.UNIT_START, u, t0(e), 0, 0, 0);
  }

  private void virtualEnd(RecordedEvent e) {
    int u = unit(e.getThread(), true);
    if (u == 0) return;
    rec.emitFor(Kinds.UNIT_END, u, t0(e), 0, Kinds.OK, 0);
    endedNow = add(endedNow, e.getThread().getJavaThreadId());
  }

  /**
   * Virtual threads that ended in this flush and the one before: their units are forgotten
   * (thread ids are never reused; a program may start millions) one flush after their end,
   * since a flush's events need not arrive in time order (the exit's dump does not sort).
   * Guarded by this (the stream's handlers and {@link #flushed} hold it).
   */
  private long[] endedNow = new long[64]; // [0]: how many, then the ids (no boxing)

  private long[] endedBefore = new long[64];

  private static long[] add(long[] list, long tid) {
    int n = (int) list[0] + 1;
    if (n == list.length) list = java.util.Arrays.copyOf(list, n * 2);
    list[n] = tid;
    list[0] = n;
    return list;
  }

  private void forgetEnded() {
    for (int i = 1; i <= (int) endedBefore[0]; i++) rec.forgetUnit(endedBefore[i]);
    endedBefore[0] = 0;
    if (endedBefore.length > 1 << 16) endedBefore = new long[64]; // after a burst
    long[] t = endedBefore;
    endedBefore = endedNow;
    endedNow = t;
  }

  /** Monitor events wait for the end of their flush (see {@link #monitors}). */
  private void hold(RecordedEvent e) {
    if (pendingMonitors.size() < 100_000) pendingMonitors.add(e);
  }

  /**
   * The monitor events of one flush, in two passes: first every event that overlaps a wait
   * the sampler recorded maps its monitor address to the sampler's resource (class +
   * identity hash); then the events are written, so a monitor the sampler has seen is one
   * resource in the whole batch.
   */
  private void monitors() {
    if (!pendingMonitors.isEmpty()) rec.statsExtra.merge("jfr_monitor_events", (long) pendingMonitors.size(), Long::sum);
    try {
      for (RecordedEvent e : pendingMonitors) {
        RecordedThread th = e.getThread();
        if (sampler == null || th == null) continue;
        int r = sampler.coveringWait(th.getJavaThreadId(), t0(e), t1(e));
        if (r != 0) monitorByAddress.put(e.getLong("address"), r);
      }
      for (RecordedEvent e : pendingMonitors) {
        if (e.getEventType().getName().equals("jdk.JavaMonitorEnter")) {
          guard("JavaMonitorEnter", e, this::monitorEnter);
        } else {
          guard("JavaMonitorWait", e, this::monitorWait);
        }
      }
    } finally {
      pendingMonitors.clear();
    }
  }

  private int monitor(RecordedEvent e, int learned) {
    long addr = e.getLong("address");
    if (learned != 0) {
      monitorByAddress.put(addr, learned);
      return learned;
    }
    Integer r = monitorByAddress.get(addr);
    if (r != null) return r;
    String cls = e.getClass("monitorClass") == null ? "java.lang.Object" : e.getClass("monitorClass").getName();
    return monitorByAddress.computeIfAbsent(
        addr, a -> rec.newResource("monitor", cls + "@0x" + Long.toHexString(a), "jfr_address", a));
  }

  private void monitorEnter(RecordedEvent e) {
    RecordedThread th = e.getThread();
    if (th == null) return;
    long s = t0(e);
    long end = t1(e);
    int covered = sampler == null ? 0 : sampler.coveringWait(th.getJavaThreadId(), s, end);
    int r = monitor(e, covered);
    if (covered != 0) return; // the sampler recorded this wait and its end
    int u = unit(th, false);
    int p = unit(e.getThread("previousOwner"), false);
    int loc = loc(e);
    if (rec.cfg.syncHooked(topAppClass(e))) {
      // instrumented code: its hooks record the holds exactly; JFR adds only the wait
      rec.emitFor(Kinds.UNIT_BLOCK, u, s, r, Kinds.ACQUIRE, loc);
      return;
    }
    // a thread that waits to enter a monitor does not hold it: ends a hold the sampler
    // may have closed only at a later sample
    rec.emitFor(Kinds.LOCK_RELEASE, u, s - 1, r, 0, 0);
    rec.emitFor(Kinds.UNIT_BLOCK, u, s, r, Kinds.ACQUIRE, loc);
    if (p != 0 && p != u) rec.emitFor(Kinds.LOCK_RELEASE, p, end - 1, r, 0, 0);
    rec.emitFor(Kinds.LOCK_ACQUIRED, u, end, r, 0, loc);
    rec.emitFor(Kinds.LOCK_RELEASE, u, end, r, 0, 0);
  }

  private void monitorWait(RecordedEvent e) {
    int u = unit(e.getThread(), false);
    if (u == 0) return;
    int r = monitor(e, 0);
    long s = t0(e);
    long end = t1(e);
    boolean timedOut = e.getBoolean("timedOut");
    int n = unit(e.getThread("notifier"), false);
    rec.emitFor(Kinds.UNIT_BLOCK, u, s, r, Kinds.WAIT, loc(e));
    if (n != 0 && n != u && !timedOut) rec.emitFor(Kinds.SYNC_NOTIFY, n, end - 1, r, 1, 0);
    rec.emitFor(Kinds.UNIT_WAKE, u, end, r, timedOut ? Kinds.TIMEOUT : Kinds.OK, 0);
  }

  private static final String CONDITION = "java.util.concurrent.locks.AbstractQueuedSynchronizer$ConditionObject";

  private void park(RecordedEvent e) {
    RecordedThread th = e.getThread();
    if (th == null) return;
    String cls = e.getClass("parkedClass") == null ? "" : e.getClass("parkedClass").getName();
    // the lock hooks record these waits, Condition.await's among them
    if ((Sampler.hookedSync(cls) || cls.equals(CONDITION)) && rec.cfg.hooks) return;
    if (insideSleep(e)) return; // the jdk.ThreadSleep event records this wait
    long s = t0(e);
    long end = t1(e);
    if (sampler != null && sampler.coveringWait(th.getJavaThreadId(), s, end) != 0) return;
    int u = unit(th, false);
    long addr = has(e, "address") ? e.getLong("address") : 0;
    int r =
        cls.isEmpty() && addr == 0
            ? rec.namedResource("notify", "LockSupport.park")
            : rec.namedResource("condition", (cls.isEmpty() ? "java.lang.Object" : cls) + "@0x" + Long.toHexString(addr));
    long timeout = has(e, "timeout") ? e.getLong("timeout") : 0;
    boolean timedOut = timeout > 0 && end - s >= timeout * 1_000_000L;
    rec.emitFor(Kinds.UNIT_BLOCK, u, s, r, Kinds.WAIT, loc(e));
    rec.emitFor(Kinds.UNIT_WAKE, u, end, r, timedOut ? Kinds.TIMEOUT : Kinds.OK, 0);
  }

  /**
   * A park that implements {@code Thread.sleep}: a virtual thread sleeps by parking, and
   * one pinned to its carrier parks the carrier, which JFR reports as a ThreadPark inside
   * the ThreadSleep of the same thread (its stack passes through
   * {@code VirtualThread.sleepNanos}). The sleep is the one wait.
   */
  static boolean insideSleep(RecordedEvent e) {
    RecordedStackTrace st = e.getStackTrace();
    if (st == null) return false;
    for (RecordedFrame f : st.getFrames()) {
      if (f.getMethod() == null) continue;
      String cls = f.getMethod().getType().getName();
      if (!Hooks.isRuntimeClass(cls)) return false; // the program's frame: past the JDK's
      if (cls.equals("java.lang.VirtualThread") && f.getMethod().getName().equals("sleepNanos")) return true;
    }
    return false;
  }

  private void sleep(RecordedEvent e) {
    int u = unit(e.getThread(), false);
    if (u == 0) return;
    int r = rec.namedResource("sleep", "Thread.sleep");
    rec.emitFor(Kinds.UNIT_BLOCK, u, t0(e), r, Kinds.SLEEP, loc(e));
    rec.emitFor(Kinds.UNIT_WAKE, u, t1(e), r, Kinds.OK, 0);
  }

  private void pinned(RecordedEvent e) {
    int u = unit(e.getThread(), true);
    if (u == 0) return;
    int c = has(e, "carrierThread") ? unit(e.getThread("carrierThread"), false) : 0;
    rec.emitFor(Kinds.UNIT_RUN, u, t0(e), 0, c, loc(e));
    rec.statsExtra.put("jfr_pinned", ++pinned);
  }

  /**
   * The unit GC and safepoint pauses are written on: the main thread's (a stop-the-world
   * pause stops it too, and gc.begin/end are scheduling events that end no wait).
   */
  private int vm() {
    return Agent.mainUnit;
  }

  private void gc(RecordedEvent e) {
    String name = has(e, "name") ? String.valueOf(e.getString("name")) : "";
    int gen = name.matches("(?i).*(old|full|major|mixed).*") ? 1 : 0;
    rec.emitFor(Kinds.GC_BEGIN, vm(), t0(e), 0, gen, 0);
    rec.emitFor(Kinds.GC_END, vm(), t1(e), 0, 0, 0);
  }

  private void safepoint(RecordedEvent e) {
    rec.emitFor(Kinds.GC_BEGIN, vm(), t0(e), 0, -1, 0);
    rec.emitFor(Kinds.GC_END, vm(), t1(e), 0, 0, 0);
  }
}
