package dev.willowisp.agent;

import java.lang.management.LockInfo;
import java.lang.management.ManagementFactory;
import java.lang.management.MonitorInfo;
import java.lang.management.ThreadInfo;
import java.lang.management.ThreadMXBean;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.LockSupport;

/**
 * Stuck threads, seen while they are stuck: JFR reports a contended monitor entry only when
 * it ends, so a thread blocked forever never shows up there. Every {@code
 * WILLOWISP_JAVA_SAMPLE_MS} (100 ms) this thread reads every thread's state, lock and lock
 * owner from {@code ThreadMXBean.getThreadInfo(ids, 0)} (no stacks: no safepoint). A wait
 * seen in two samples in a row (so at least one interval old) is recorded at once, timed at
 * the first sample that saw it:
 *
 * <ul>
 *   <li>the waiter's {@code unit.block(ACQUIRE)} on the lock, keyed by class + identity hash
 *       (skipped when a bytecode hook already recorded this wait);
 *   <li>for a monitor or an unhooked lock, the holder's {@code lock.acquired} (once), before
 *       this sample and before the holder's own wait if it waits too, located at the frame
 *       that locked the monitor ({@code MonitorInfo}).
 * </ul>
 *
 * Only then are stacks taken, for the two threads involved. A sample proceeds in time order:
 * first the holds the sampler wrote that are over get their {@code lock.release} (checked
 * with {@code getThreadInfo(holders, lockedMonitors)}, only while such holds exist), then
 * waits that ended give the waiter's {@code lock.acquired} (a hold checked the same way
 * later), then new waits are noted and twice-seen ones recorded. The flusher makes all of
 * this durable within 100 ms, so a deadlocked JVM shows its cycle while it runs and after
 * {@code kill -9}. {@code findDeadlockedThreads()} (a safepoint) runs only while recorded
 * waits are open, at most once a second; its count goes into the stats record.
 */
final class Sampler implements Runnable {
  private final Recorder rec;
  private final ThreadMXBean mx = ManagementFactory.getThreadMXBean();
  /** tid -> the wait the last sample saw it in. Sampler thread only. */
  private final Map<Long, Seen> seen = new HashMap<>();
  /** (holder unit, resource) pairs whose acquisition the sampler wrote and not yet closed. */
  private final Map<Long, Hold> holds = new HashMap<>();
  /** Lock key -> the owner this sample's waiters name; rebuilt every sample. */
  private final Map<Long, Long> owners = new HashMap<>();
  /** tid -> recent sampled waits {start, end (MAX while open), resource}; read by the JFR thread. */
  final ConcurrentHashMap<Long, Deque<long[]>> recent = new ConcurrentHashMap<>();

  private long lastDeadlockCheck;

  private static final class Seen {
    final String cls;
    final int hash;
    final long count;
    final boolean monitor;
    final long first;
    boolean recorded;
    boolean byHook;
    int res;
    int waiter;
    int loc;
    long tid;
    /** The waiting code is instrumented (WILLOWISP_JAVA_SYNC): its hook records the acquisition. */
    boolean hookedCode;
    long[] window;

    Seen(String cls, int hash, long count, boolean monitor, long first) {
      this.cls = cls;
      this.hash = hash;
      this.count = count;
      this.monitor = monitor;
      this.first = first;
    }
  }

  Sampler(Recorder rec) {
    this.rec = rec;
  }

  static Sampler start(Recorder rec) {
    Sampler s = new Sampler(rec);
    Thread t = new Thread(s, "willowisp-sampler");
    t.setDaemon(true);
    rec.agentThreads.add(t);
    t.start();
    return s;
  }

  @Override
  public void run() {
    long period = rec.cfg.sampleMs * 1_000_000L;
    while (true) {
      LockSupport.parkNanos(period);
      try {
        sample();
      } catch (Throwable e) {
        rec.fault("sampler", e);
      }
    }
  }

  static boolean hookedSync(String cls) {
    return cls.startsWith("java.util.concurrent.locks.ReentrantLock$")
        || cls.startsWith("java.util.concurrent.locks.ReentrantReadWriteLock$");
  }

  private static String kindOf(String cls, boolean monitor) {
    if (monitor) return "monitor";
    if (cls.startsWith("java.util.concurrent.locks.ReentrantReadWriteLock$")) return "rwlock";
    if (cls.startsWith("java.util.concurrent.locks.ReentrantLock$")) return "rlock";
    return "lock";
  }

  /** A hold the sampler wrote (lock.acquired) and must close when it sees it end. */
  private static final class Hold {
    final long tid;
    final int unit;
    final int res;
    final int hash;
    final boolean monitor;

    Hold(long tid, int unit, int res, int hash, boolean monitor) {
      this.tid = tid;
      this.unit = unit;
      this.res = res;
      this.hash = hash;
      this.monitor = monitor;
    }
  }

  /** The virtual-thread scheduler's carrier threads seen at the last sample (JDK 21+). */
  private Set<Long> carriers = Set.of();

  /**
   * The thread ids minus the carrier threads of virtual threads (JDK 21+), which are never
   * asked about: on JDK 25 (to 25.0.3 at least) {@code getThreadInfo} on a carrier while a
   * virtual thread mounts or unmounts on it can crash the JVM (SIGSEGV in
   * ThreadSnapshot::initialize, JDK-8392031), which a program starting virtual threads at a
   * high rate hits within seconds. A carrier itself waits for nothing of the program's:
   * its virtual threads' waits come from the hooks and JFR. The ids are read first, the
   * carriers then, so every carrier among the ids is known.
   */
  private long[] withoutCarriers(long[] ids) {
    if (!Threads.virtualThreadsExist()) return ids;
    ThreadGroup g = Thread.currentThread().getThreadGroup();
    while (g.getParent() != null) g = g.getParent();
    Thread[] all = new Thread[g.activeCount() + 32];
    int n = g.enumerate(all, true);
    Set<Long> found = new HashSet<>();
    for (int i = 0; i < n; i++) {
      if (all[i].getClass().getName().equals("jdk.internal.misc.CarrierThread")) found.add(all[i].getId());
    }
    carriers = found;
    return withoutKnownCarriers(ids);
  }

  private long[] withoutKnownCarriers(long[] ids) {
    Set<Long> c = carriers;
    if (c.isEmpty()) return ids;
    return java.util.Arrays.stream(ids).filter(id -> !c.contains(id)).toArray();
  }

  void sample() {
    long t = Recorder.now();
    ThreadInfo[] infos = mx.getThreadInfo(withoutCarriers(mx.getAllThreadIds()), 0);
    // 1. the holds the sampler wrote that are over: lock.release, first in time
    closeHolds(t - 2);
    // 2. the waits that are over (the thread moved on): the waiter now holds the lock
    Map<Long, ThreadInfo> waiting = new HashMap<>();
    for (ThreadInfo info : infos) {
      if (info == null) continue;
      LockInfo li = info.getLockInfo();
      Thread.State st = info.getThreadState();
      boolean monitor = st == Thread.State.BLOCKED && li != null;
      boolean owned =
          (st == Thread.State.WAITING || st == Thread.State.TIMED_WAITING)
              && li != null
              && (info.getLockOwnerId() != -1 || hookedSync(li.getClassName()));
      if (!monitor && !owned) continue;
      // the carrier of a pinned virtual thread that parked waits on that VirtualThread
      // object: the virtual thread's own wait, which JFR reports, not a lock contention
      if (li.getClassName().startsWith("java.lang.VirtualThread")) continue;
      if (Recorder.isAgentName(info.getThreadName()) || isAgentThread(info.getThreadId())) continue;
      // a wait for the agent's own thread (JFR starting up holds JFR's class monitors, which
      // a program that uses JFR itself may wait for) is the agent's, not the program's
      long owner = info.getLockOwnerId();
      if (owner != -1 && (Recorder.isAgentName(info.getLockOwnerName()) || isAgentThread(owner))) continue;
      if (Boundaries.gate && !inBoundary(info.getThreadId())) continue; // hops: inside only
      waiting.put(info.getThreadId(), info);
    }
    // who holds each lock now, as its waiters' lock owner says
    owners.clear();
    for (ThreadInfo info : waiting.values()) {
      if (info.getLockOwnerId() != -1) {
        LockInfo li = info.getLockInfo();
        owners.put(Recorder.lockKey(li.getClassName(), li.getIdentityHashCode()), info.getLockOwnerId());
      }
    }
    for (Iterator<Map.Entry<Long, Seen>> it = seen.entrySet().iterator(); it.hasNext(); ) {
      Map.Entry<Long, Seen> e = it.next();
      ThreadInfo now = waiting.get(e.getKey());
      if (now == null || !same(e.getValue(), now)) {
        close(e.getValue(), t);
        it.remove();
      }
    }
    // 3. new waits are remembered; waits seen twice are recorded
    boolean open = false;
    for (ThreadInfo info : waiting.values()) {
      Seen prev = seen.get(info.getThreadId());
      if (prev == null) {
        LockInfo li = info.getLockInfo();
        boolean monitor = info.getThreadState() == Thread.State.BLOCKED;
        long count = monitor ? info.getBlockedCount() : info.getWaitedCount();
        seen.put(info.getThreadId(), new Seen(li.getClassName(), li.getIdentityHashCode(), count, monitor, t));
      } else {
        open = true;
        if (!prev.recorded) record(prev, info, t);
      }
    }
    if (open && t - lastDeadlockCheck > 1_000_000_000L) {
      lastDeadlockCheck = t;
      long[] dead = mx.findDeadlockedThreads();
      rec.statsExtra.put("jvm_deadlocked_threads", (long) (dead == null ? 0 : dead.length));
    }
  }

  /** Is this thread handling a boundary instance (hops mode records only those waits)? */
  private boolean inBoundary(long tid) {
    Ring r = rec.ringByTid.get(tid);
    // a thread started inside an instance that has recorded nothing yet is inside too
    return r != null ? r.boundary != null : Spawns.waiting(tid);
  }

  private static boolean same(Seen s, ThreadInfo info) {
    LockInfo li = info.getLockInfo();
    boolean monitor = info.getThreadState() == Thread.State.BLOCKED;
    long count = monitor ? info.getBlockedCount() : info.getWaitedCount();
    return s.monitor == monitor && s.count == count && s.hash == li.getIdentityHashCode() && s.cls.equals(li.getClassName());
  }

  /** Releases of sampler-written holds whose thread no longer holds the lock. */
  private void closeHolds(long t) {
    if (holds.isEmpty()) return;
    long[] ids = holds.values().stream().mapToLong(h -> h.tid).distinct().toArray();
    boolean syncs = holds.values().stream().anyMatch(h -> !h.monitor);
    ThreadInfo[] infos = mx.getThreadInfo(withoutKnownCarriers(ids), true, syncs);
    Map<Long, Set<Integer>> held = new HashMap<>();
    for (ThreadInfo info : infos) {
      if (info == null) continue;
      Set<Integer> h = new HashSet<>();
      for (MonitorInfo m : info.getLockedMonitors()) h.add(m.getIdentityHashCode());
      for (LockInfo l : info.getLockedSynchronizers()) h.add(l.getIdentityHashCode());
      held.put(info.getThreadId(), h);
    }
    for (Iterator<Hold> it = holds.values().iterator(); it.hasNext(); ) {
      Hold h = it.next();
      Set<Integer> now = held.get(h.tid);
      if (now == null || !now.contains(h.hash)) {
        rec.emitFor(Kinds.LOCK_RELEASE, h.unit, t, h.res, 0, 0);
        it.remove();
      }
    }
  }

  private boolean isAgentThread(long tid) {
    for (Thread a : rec.agentThreads) {
      if (a.getId() == tid) return true;
    }
    return false;
  }

  private void record(Seen s, ThreadInfo info, long t) {
    s.recorded = true;
    long tid = info.getThreadId();
    s.tid = tid;
    s.res = rec.lockResource(s.cls, s.hash, kindOf(s.cls, s.monitor));
    s.waiter = rec.unitFor(tid, info.getThreadName(), false);
    Ring wr = rec.ringByTid.get(tid);
    s.byHook = !s.monitor && wr != null && wr.blockedOn == s.res;
    long owner = info.getLockOwnerId();
    boolean holderHooked = !s.monitor && hookedSync(s.cls) && rec.cfg.hooks;
    long[] ids = owner != -1 && !holderHooked ? new long[] {tid, owner} : new long[] {tid};
    ThreadInfo[] full = s.byHook || carriers.contains(tid) ? new ThreadInfo[0] : mx.getThreadInfo(withoutKnownCarriers(ids), s.monitor, false);
    if (!s.byHook && full.length > 0 && full[0] != null) {
      s.loc = firstAppFrame(full[0].getStackTrace());
      s.hookedCode = s.monitor && rec.cfg.syncHooked(firstAppClass(full[0].getStackTrace()));
      rec.emitFor(Kinds.UNIT_BLOCK, s.waiter, s.first, s.res, Kinds.ACQUIRE, s.loc);
    }
    if (ids.length == 2 && full.length == 2 && full[1] != null) {
      int holder = rec.unitFor(owner, info.getLockOwnerName(), false);
      long key = ((long) holder << 32) | s.res;
      if (!holds.containsKey(key)) {
        int loc = 0;
        for (MonitorInfo m : full[1].getLockedMonitors()) {
          if (m.getIdentityHashCode() == s.hash && m.getLockedStackFrame() != null) {
            loc = frameLocation(m.getLockedStackFrame());
          }
        }
        // the monitorenter hook recorded this hold, and records its release: a second
        // acquisition here would make the holder take it again (and release it twice)
        if (!s.monitor || !hookRecorded(owner, s.hash)) {
          // the holder held it at this sample, and before its own wait if it waits too
          Seen hs = seen.get(owner);
          long at = Math.min(t, hs != null ? hs.first : t) - 1;
          rec.emitFor(Kinds.LOCK_ACQUIRED, holder, at, s.res, 0, loc);
          holds.put(key, new Hold(owner, holder, s.res, s.hash, s.monitor));
        }
      }
    }
    s.window = new long[] {s.first, Long.MAX_VALUE, s.res};
    Deque<long[]> d = recent.computeIfAbsent(tid, k -> new ArrayDeque<>());
    synchronized (d) {
      d.addLast(s.window);
      if (d.size() > 16) d.removeFirst();
    }
  }

  /**
   * Did the monitor hooks record thread {@code tid}'s hold of the monitor with this identity
   * hash (entered in instrumented code while recording)? Read from the holder's ring while
   * it holds the monitor, so its entries are not changing under this look.
   */
  private boolean hookRecorded(long tid, int hash) {
    Ring r = rec.ringByTid.get(tid);
    if (r == null) return false;
    Object[] m = r.monitors;
    for (int i = 0; i < Math.min(r.monitorDepth, m.length); i++) {
      Object o = m[i];
      if (o != null && System.identityHashCode(o) == hash) return true;
    }
    return false;
  }

  private void close(Seen s, long t) {
    if (!s.recorded) return;
    if (s.window != null) s.window[1] = t;
    if (s.byHook || s.hookedCode || (!s.monitor && hookedSync(s.cls) && rec.cfg.hooks)) {
      return; // a hook writes the acquisition
    }
    // The waiter got the lock. If it holds it now (a waiter names it as owner), the next
    // samples tell how long (closeHolds); otherwise it has already let it go again, and
    // since when is unknown: a zero-length hold keeps the hand-off without inventing one.
    long key = ((long) s.waiter << 32) | s.res;
    if (holds.containsKey(key)) return;
    rec.emitFor(Kinds.LOCK_ACQUIRED, s.waiter, t, s.res, 0, s.loc);
    Long owner = owners.get(Recorder.lockKey(s.cls, s.hash));
    if (owner != null && owner == s.tid) {
      holds.put(key, new Hold(s.tid, s.waiter, s.res, s.hash, s.monitor));
    } else {
      rec.emitFor(Kinds.LOCK_RELEASE, s.waiter, t, s.res, 0, 0);
    }
  }

  /** The resource of a sampled wait of thread tid overlapping [start, end], or 0. */
  int coveringWait(long tid, long start, long end) {
    Deque<long[]> d = recent.get(tid);
    if (d == null) return 0;
    synchronized (d) {
      for (long[] w : d) {
        if (w[0] <= end && start <= w[1]) return (int) w[2];
      }
    }
    return 0;
  }

  private int firstAppFrame(StackTraceElement[] stack) {
    for (StackTraceElement f : stack) {
      if (!Hooks.isRuntimeClass(f.getClassName()) && f.getLineNumber() > 0) return frameLocation(f);
    }
    return 0;
  }

  private static String firstAppClass(StackTraceElement[] stack) {
    for (StackTraceElement f : stack) {
      if (!Hooks.isRuntimeClass(f.getClassName())) return f.getClassName();
    }
    return null;
  }

  private int frameLocation(StackTraceElement f) {
    return rec.location(
        Recorder.sourcePath(f.getClassName(), f.getFileName()),
        f.getLineNumber(),
        f.getClassName() + "." + f.getMethodName());
  }
}
