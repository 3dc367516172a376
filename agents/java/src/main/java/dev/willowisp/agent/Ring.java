package dev.willowisp.agent;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.lang.ref.WeakReference;

/**
 * One thread's event buffer: a single-producer, single-consumer ring of event columns.
 *
 * <p>The owning thread appends ({@link #add}) without locks or allocation: it fills the
 * slot, then publishes {@code head} with a release store; the flusher reads {@code head}
 * with an acquire load, copies the rows out and advances {@code tail}. When the ring is
 * full the event is dropped and counted ({@code dropped}), never waited for: a program
 * thread must not block on the agent. The flusher turns the count into {@code agent.drop}.
 */
final class Ring {
  private static final VarHandle HEAD;

  static {
    try {
      HEAD = MethodHandles.lookup().findVarHandle(Ring.class, "head", long.class);
    } catch (ReflectiveOperationException e) {
      throw new ExceptionInInitializerError(e);
    }
  }

  final byte[] kind;
  final int[] unit;
  final long[] time;
  final int[] res;
  final long[] arg;
  final int[] loc;
  final int mask;
  /** The unit of the owning thread; 0 for agent threads. */
  final int unitId;
  final long tid;
  final WeakReference<Thread> thread;
  /** Agent threads (flusher, sampler, JFR) record on behalf of others, never their own locks. */
  final boolean agent;

  // Invariant: tail <= head <= tail + capacity. head: owner only; tail: flusher only.
  @SuppressWarnings("unused")
  private long head;

  volatile long tail;
  /** Events the owner could not store (ring full); written by the owner only. */
  volatile long dropped;
  /** The part of {@link #dropped} already written as agent.drop; flusher only. */
  long droppedReported;
  /**
   * A direct-mapped cache of lock resources by the lock's sync object (compared by
   * reference), so the hot path needs no map lookup; owner only. 256 slots for a platform
   * thread, 64 for a virtual thread (there may be very many of those).
   */
  final Object[] lockKeys;

  final Recorder.LockRes[] lockVals;

  /**
   * The monitors this thread entered through instrumented code, innermost last (monitors
   * are entered and exited in nested order); a re-entry is not a new acquisition. Owner only.
   */
  final Object[] monitors = new Object[32];

  int monitorDepth;

  /**
   * The task handed off from a boundary instance that this thread runs now (see
   * {@link HandOffs}), the instance, the boundary the thread had before it, and where the
   * ring stood at its start; owner only.
   */
  Object handoffTask;

  Boundaries.Instance handoffInst;
  Object handoffPrev;
  long handoffRows;

  /**
   * The instance this thread was started inside (see {@link Spawns}): it is inside from its
   * first hook to its end; where the ring stood then. Owner only.
   */
  Boundaries.Instance spawnInst;

  long spawnRows;

  /** The location of the virtual-thread start in progress on this thread (0: none); owner only. */
  int startLoc;

  /** Set while the owner runs agent code, so hooks that agent code triggers do nothing. */
  boolean busy;
  /** The unit this thread last wrote join.done for (join() calls join(0): one, not two). */
  int lastJoined;
  /** The lock resource a hook saw this thread start waiting for (0: none); read by the sampler. */
  volatile int blockedOn;
  /**
   * The boundary instance this thread is handling ({@link Boundaries.Instance}), or null.
   * Written by the owner at an inbound request's entry and exit; read by the gated hooks.
   */
  volatile Object boundary;

  Ring(int capacity, int unitId, Thread t, boolean agent) {
    int cap = Integer.highestOneBit(Math.max(capacity, 16));
    kind = new byte[cap];
    unit = new int[cap];
    time = new long[cap];
    res = new int[cap];
    arg = new long[cap];
    loc = new int[cap];
    mask = cap - 1;
    int slots = cap >= 4096 ? 256 : 64;
    lockKeys = new Object[slots];
    lockVals = new Recorder.LockRes[slots];
    this.unitId = unitId;
    this.tid = t.getId();
    this.thread = new WeakReference<>(t);
    this.agent = agent;
  }

  /**
   * Appends one event; owner thread only. Returns false once, when this event fills the ring
   * to three quarters (the flusher should run now rather than at its next period). A full
   * ring drops the event and counts it; it does not wake the flusher again (it is awake).
   */
  boolean add(int k, int u, long t, int r, long a, int l) {
    long h = head;
    long used = h - tail;
    if (used > mask) {
      dropped = dropped + 1;
      return true;
    }
    int i = (int) h & mask;
    kind[i] = (byte) k;
    unit[i] = u;
    time[i] = t;
    res[i] = r;
    arg[i] = a;
    loc[i] = l;
    HEAD.setRelease(this, h + 1);
    return used != (mask - (mask >> 2));
  }

  /**
   * Appends one event unless the ring is full; owner thread only. Returns -1 when full
   * (nothing stored, nothing counted), 1 when this event fills the ring to three quarters
   * (wake the flusher), else 0.
   */
  int offer(int k, int u, long t, int r, long a, int l) {
    long h = head;
    long used = h - tail;
    if (used > mask) return -1;
    int i = (int) h & mask;
    kind[i] = (byte) k;
    unit[i] = u;
    time[i] = t;
    res[i] = r;
    arg[i] = a;
    loc[i] = l;
    HEAD.setRelease(this, h + 1);
    return used != (mask - (mask >> 2)) ? 0 : 1;
  }

  /** Events this thread has written or dropped so far; owner only. */
  long written() {
    return head + dropped;
  }

  /** Events waiting to be flushed. */
  long pending() {
    return (long) HEAD.getAcquire(this) - tail;
  }

  /** Moves the published rows into {@code out}; flusher only. Returns how many. */
  int drainTo(Wtrace.Events out) {
    long h = (long) HEAD.getAcquire(this);
    long t = tail;
    if (h <= t) return 0;
    int n = (int) (h - t); // at most the capacity (the invariant tail <= head <= tail + cap)
    // at most two runs of slots (the ring wraps once), each copied column by column in bulk
    int from = (int) t & mask;
    int first = Math.min(n, mask + 1 - from);
    out.append(this, from, first);
    if (first < n) out.append(this, 0, n - first);
    tail = h;
    return n;
  }

  boolean ownerGone() {
    Thread t = thread.get();
    return t == null || !t.isAlive();
  }
}
