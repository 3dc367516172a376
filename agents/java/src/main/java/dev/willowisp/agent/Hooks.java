package dev.willowisp.agent;

import java.lang.instrument.Instrumentation;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;
import java.lang.invoke.VarHandle;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.locks.AbstractOwnableSynchronizer;
import java.util.concurrent.locks.AbstractQueuedSynchronizer;
import java.util.concurrent.locks.ReentrantLock;
import jdk.internal.vm.annotation.DontInline;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * What the bytecode advice calls (see {@link Instrument}): this class is on the bootstrap
 * class path so {@code java.base} code can reach it. Every method catches everything; a
 * hook that fails records a fault and the program's call goes on unchanged.
 *
 * <p>Locks are keyed by their AQS {@code sync} object's class and identity hash, the object
 * {@code ThreadMXBean}'s LockInfo names for a thread parked in {@code lock()}, so the
 * sampler's "blocked on X held by Y" and these hooks name one resource. {@code
 * ReentrantLock} is an {@code rlock} (arg: hold depth), {@code ReentrantReadWriteLock} an
 * {@code rwlock} (arg 0 write, 1 read; only a thread's outermost hold of each mode is
 * written, nested ones carry no depth); a {@code Condition.await} ends the hold (await
 * releases the lock fully) and writes it again, at its old depth, when await returns. Every
 * acquisition and release is recorded (a read-write lock's outermost ones; the lock-order
 * analysis needs them all); the caller's source line is taken for the first
 * {@link #LOCATED_USES} acquisitions of each lock and for every contended one (a stack walk
 * costs about a microsecond), or always with {@code WILLOWISP_JAVA_STACKS=all}.
 *
 * <p>The entry points are {@code @DontInline} (honoured: this class is boot-loaded): the JIT
 * calls them instead of inlining them into every caller, so when one of their rare paths
 * runs for the first time (a new lock, a new thread, a contended wait) only the small hook
 * is recompiled, not the program's hot method around it. A call costs a few ns; a
 * recompiled caller cost the lock-heavy benchmark a tenth of a CPU second and more.
 */
public final class Hooks {
  static final int LOCATED_USES = 64;
  private static final StackWalker WALKER = StackWalker.getInstance();


  private Hooks() {}

  /** The recorder and the calling thread's ring, or null when nothing should be recorded. */
  private static Ring ringOrNull(Recorder rec) {
    if (rec == null) return null;
    Ring r = rec.ring();
    if (r.busy || r.agent) return null;
    // hops mode with boundaries: only a thread inside a boundary instance records
    return Boundaries.gate && r.boundary == null ? null : r;
  }

  /** The calling thread's ring whatever the gate, or null (agent code, agent threads). */
  private static Ring ringAny(Recorder rec) {
    if (rec == null) return null;
    Ring r = rec.ring();
    return r.busy || r.agent ? null : r;
  }

  /**
   * The resource of a lock's sync object, through the thread's cache: two-way, 256 slots
   * (a lock whose slot is taken tries the next one), so a few dozen hot locks do not evict
   * one another into the recorder's map on every acquisition.
   */
  private static Recorder.LockRes res(Recorder rec, Ring r, Object sync, String kind, Object owner) {
    Object[] keys = r.lockKeys;
    int h = System.identityHashCode(sync);
    int i = (h ^ (h >>> 8)) & (keys.length - 2); // even: slots i and i + 1
    if (keys[i] == sync) return r.lockVals[i];
    if (keys[i + 1] == sync) return r.lockVals[i + 1];
    Recorder.LockRes lr = rec.lockRes(sync.getClass().getName(), h, kind);
    if (!lr.named && owner != null) {
      lr.named = true; // once, racy: two threads may both look, and find the same name
      String field = LockNames.staticField(owner);
      if (field != null) rec.renameLock(lr, kind, field, h);
    }
    if (keys[i] != null) { // keep the newer of the two in the first slot
      keys[i + 1] = keys[i];
      r.lockVals[i + 1] = r.lockVals[i];
    }
    keys[i] = sync;
    r.lockVals[i] = lr;
    return lr;
  }

  // --- ReentrantLock ------------------------------------------------------------------

  /**
   * Before {@code lock()}, {@code lockInterruptibly()} and timed {@code tryLock}: if another
   * thread holds the lock, records the wait (unit.block) now, so a thread that never gets
   * the lock still shows what it waits for. Returns the block's location + 1, or 0.
   */
  @DontInline
  public static int reentrantEnter(ReentrantLock lock, Object sync) {
    // the common case first: a free lock is no wait (and needs no ring lookup)
    if (!lock.isLocked()) return 0;
    Recorder rec = Recorder.INSTANCE;
    Ring r = ringOrNull(rec);
    if (r == null) return 0;
    r.busy = true;
    try {
      if (lock.isHeldByCurrentThread()) return 0;
      Recorder.LockRes lr = res(rec, r, sync, "rlock", lock);
      int loc = callerLocation(rec);
      rec.emit(r, Kinds.UNIT_BLOCK, r.unitId, Recorder.now(), lr.id, Kinds.ACQUIRE, loc);
      r.blockedOn = lr.id;
      return loc + 1;
    } catch (Throwable e) {
      rec.fault("ReentrantLock.lock", e);
      return 0;
    } finally {
      r.busy = false;
    }
  }

  /** After an acquisition attempt: lock.acquired when it succeeded, else the wait's end. */
  @DontInline
  public static void reentrantExit(ReentrantLock lock, Object sync, int blocked, boolean acquired, Throwable thrown) {
    Recorder rec = Recorder.INSTANCE;
    Ring r = ringOrNull(rec);
    if (r == null) return;
    r.busy = true;
    try {
      if (blocked != 0) r.blockedOn = 0; // a volatile write only after a recorded wait
      if (!acquired && blocked == 0) return;
      Recorder.LockRes lr = res(rec, r, sync, "rlock", lock);
      long t = Recorder.now();
      if (acquired) {
        int loc = blocked != 0 ? blocked - 1 : usedLocation(rec, lr);
        rec.emit(r, Kinds.LOCK_ACQUIRED, r.unitId, t, lr.id, lock.getHoldCount(), loc);
      } else {
        int outcome = thrown instanceof InterruptedException ? Kinds.CANCELLED : thrown != null ? Kinds.ERROR : Kinds.TIMEOUT;
        rec.emit(r, Kinds.UNIT_WAKE, r.unitId, t, lr.id, outcome, blocked - 1);
      }
    } catch (Throwable e) {
      rec.fault("ReentrantLock.acquired", e);
    } finally {
      r.busy = false;
    }
  }

  /** Before {@code unlock()}: lock.release (depth after it), written before the release. */
  @DontInline
  public static void reentrantUnlock(ReentrantLock lock, Object sync) {
    Recorder rec = Recorder.INSTANCE;
    Ring r = ringOrNull(rec);
    if (r == null) return;
    r.busy = true;
    try {
      if (!lock.isHeldByCurrentThread()) return; // unlock will throw; nothing was held
      Recorder.LockRes lr = res(rec, r, sync, "rlock", lock);
      rec.emit(r, Kinds.LOCK_RELEASE, r.unitId, Recorder.now(), lr.id, lock.getHoldCount() - 1, 0);
    } catch (Throwable e) {
      rec.fault("ReentrantLock.unlock", e);
    } finally {
      r.busy = false;
    }
  }

  // --- ReentrantReadWriteLock ---------------------------------------------------------

  /**
   * After a read or write acquisition attempt: {@code lock.acquired} for the calling
   * thread's outermost hold of that mode only (its hold count is then 1).
   */
  @DontInline
  public static void rwExit(Object sync, boolean shared, int blocked, boolean acquired, Throwable thrown) {
    Recorder rec = Recorder.INSTANCE;
    Ring r = ringOrNull(rec);
    if (r == null) return;
    r.busy = true;
    try {
      if (blocked != 0) r.blockedOn = 0; // a volatile write only after a recorded wait
      if (!acquired && blocked == 0) return;
      Recorder.LockRes lr = res(rec, r, sync, "rwlock", null);
      long t = Recorder.now();
      if (acquired) {
        // a nested hold (the thread held it already) is no new hold: only the outermost
        // is written, as the format has no depth for a read-write lock's holds
        if (rwDepth(sync, shared) > 1) return;
        int loc = blocked != 0 ? blocked - 1 : usedLocation(rec, lr);
        rec.emit(r, Kinds.LOCK_ACQUIRED, r.unitId, t, lr.id, shared ? 1 : 0, loc);
      } else {
        int outcome = thrown instanceof InterruptedException ? Kinds.CANCELLED : thrown != null ? Kinds.ERROR : Kinds.TIMEOUT;
        rec.emit(r, Kinds.UNIT_WAKE, r.unitId, t, lr.id, outcome, blocked - 1);
      }
    } catch (Throwable e) {
      rec.fault("ReadWriteLock.acquired", e);
    } finally {
      r.busy = false;
    }
  }

  /** Before a read or write unlock: {@code lock.release} for the release that ends the outermost hold. */
  @DontInline
  public static void rwUnlock(Object sync, boolean shared, Object writeLock) {
    Recorder rec = Recorder.INSTANCE;
    Ring r = ringOrNull(rec);
    if (r == null) return;
    r.busy = true;
    try {
      if (writeLock instanceof ReentrantReadWriteLock.WriteLock
          && !((ReentrantReadWriteLock.WriteLock) writeLock).isHeldByCurrentThread()) {
        return;
      }
      // not held (unlock will throw), or an inner hold's release (the lock stays held)
      int depth = rwDepth(sync, shared);
      if (depth == 0 || depth > 1) return;
      Recorder.LockRes lr = res(rec, r, sync, "rwlock", null);
      rec.emit(r, Kinds.LOCK_RELEASE, r.unitId, Recorder.now(), lr.id, shared ? 1 : 0, 0);
    } catch (Throwable e) {
      rec.fault("ReadWriteLock.unlock", e);
    } finally {
      r.busy = false;
    }
  }

  // --- Condition.await / signal (AbstractQueuedSynchronizer$ConditionObject) --------------

  /**
   * AQS's {@code state} and owner thread. {@code await} is called on the condition, which
   * knows its lock only as the AQS sync object; the hold count to release and restore is
   * that sync's state, which no public method gives. Null until {@link #openLocks} ran.
   */
  private static volatile VarHandle aqsState;

  private static volatile VarHandle aqsOwner;

  /** {@code ReentrantReadWriteLock.Sync.getReadHoldCount}, typed (Object)int; null as above. */
  private static volatile MethodHandle readHolds;

  /**
   * Opens {@code java.util.concurrent.locks} to the agent's (bootstrap, unnamed) module only,
   * so it can read a sync's state: the program's own access is unchanged. A JVM that refuses
   * leaves the handles null, and awaits record the wait without the lock's release.
   */
  static void openLocks(Instrumentation inst, Recorder rec) {
    if (aqsState != null) return;
    try {
      Module base = Object.class.getModule();
      Module me = Hooks.class.getModule();
      String pkg = AbstractQueuedSynchronizer.class.getPackageName();
      if (!base.isOpen(pkg, me)) {
        inst.redefineModule(base, Set.of(), Map.of(), Map.of(pkg, Set.of(me)), Set.of(), Map.of());
      }
      MethodHandles.Lookup here = MethodHandles.lookup();
      aqsOwner =
          MethodHandles.privateLookupIn(AbstractOwnableSynchronizer.class, here)
              .findVarHandle(AbstractOwnableSynchronizer.class, "exclusiveOwnerThread", Thread.class);
      Class<?> rwSync = Class.forName("java.util.concurrent.locks.ReentrantReadWriteLock$Sync");
      readHolds =
          MethodHandles.privateLookupIn(rwSync, here)
              .findVirtual(rwSync, "getReadHoldCount", MethodType.methodType(int.class))
              .asType(MethodType.methodType(int.class, Object.class));
      aqsState =
          MethodHandles.privateLookupIn(AbstractQueuedSynchronizer.class, here)
              .findVarHandle(AbstractQueuedSynchronizer.class, "state", int.class);
    } catch (Throwable e) {
      rec.fault("open java.util.concurrent.locks", e);
    }
  }

  /** The kind the lock hooks record {@code sync}'s lock as, or null for a lock they do not hook. */
  private static String syncKind(Object sync) {
    String c = sync.getClass().getName();
    if (c.startsWith("java.util.concurrent.locks.ReentrantLock$")) return "rlock";
    if (c.startsWith("java.util.concurrent.locks.ReentrantReadWriteLock$")) return "rwlock";
    return null;
  }

  /**
   * The calling thread's exclusive holds of a hooked lock's sync (a ReentrantLock's hold
   * count; a read-write lock's write holds, the low 16 bits of its state), or 0 when it does
   * not own it or the state cannot be read.
   */
  private static int holdsOf(Object sync, String kind) {
    VarHandle state = aqsState;
    if (state == null || kind == null || aqsOwner.get(sync) != Thread.currentThread()) return 0;
    int s = (int) state.getVolatile(sync);
    return kind.equals("rwlock") ? s & 0xFFFF : s;
  }

  /**
   * The calling thread's holds of a read-write lock's sync in one mode: write holds (the
   * low 16 bits of the AQS state, when it owns it; else 0), or read holds ({@code
   * Sync.getReadHoldCount}, the count the lock keeps per thread). -1 when they cannot be
   * read (the package was not opened): then every hold is written, as before.
   */
  private static int rwDepth(Object sync, boolean shared) {
    try {
      if (!shared) return aqsState == null ? -1 : holdsOf(sync, "rwlock");
      MethodHandle reads = readHolds;
      return reads == null ? -1 : (int) reads.invokeExact(sync);
    } catch (Throwable e) {
      return -1;
    }
  }

  /**
   * Entering {@code await*}: the wait releases the lock fully (whatever its hold count) and
   * re-acquires it before returning, so the hold ends here: {@code lock.release} (depth 0;
   * a write lock's one recorded hold) written before the release, then the
   * wait on the condition ({@code unit.block}, WAIT). Returns 1 + the holds released, or 0
   * when nothing was written (await will throw: the lock is not held).
   */
  @DontInline
  public static int awaitEnter(Object cond, Object sync) {
    Recorder rec = Recorder.INSTANCE;
    Ring r = ringOrNull(rec);
    if (r == null || cond == null || sync == null) return 0;
    r.busy = true;
    try {
      String kind = syncKind(sync);
      int holds = holdsOf(sync, kind);
      // a lock the hooks record but this thread does not own: await throws, nothing waits
      if (kind != null && aqsState != null && holds == 0) return 0;
      if (holds > 0) {
        Recorder.LockRes lr = res(rec, r, sync, kind, null);
        long t = Recorder.now();
        // an rlock to depth 0; a write lock's outermost hold (the only one written) ends
        rec.emit(r, Kinds.LOCK_RELEASE, r.unitId, t, lr.id, 0, 0);
        // signalled, the thread parks on the lock's sync until it gets it back: the sampler
        // must not take that for a lock wait of its own (this wait ends at the await's exit)
        r.blockedOn = lr.id;
      }
      Recorder.LockRes cr = res(rec, r, cond, "condition", cond);
      rec.emit(r, Kinds.UNIT_BLOCK, r.unitId, Recorder.now(), cr.id, Kinds.WAIT, callerLocation(rec));
      return holds + 1;
    } catch (Throwable e) {
      rec.fault("Condition.await", e);
      return 0;
    } finally {
      r.busy = false;
    }
  }

  /**
   * Leaving {@code await*} (normally or by an exception: AQS re-acquires the lock first
   * either way): the wait's end ({@code unit.wake}: ok, timeout when the timed await says
   * so, cancelled on interrupt), then the lock held again at its old depth.
   */
  @DontInline
  public static void awaitExit(Object cond, Object sync, int entered, Object returned, Throwable thrown) {
    if (entered == 0) return;
    Recorder rec = Recorder.INSTANCE;
    Ring r = ringAny(rec); // ungated: a wait written inside a boundary is ended after it too
    if (r == null) return;
    r.busy = true;
    try {
      int holds = entered - 1;
      if (holds > 0) r.blockedOn = 0;
      Recorder.LockRes cr = res(rec, r, cond, "condition", null);
      rec.emit(r, Kinds.UNIT_WAKE, r.unitId, Recorder.now(), cr.id, awaitOutcome(returned, thrown), 0);
      String kind = syncKind(sync);
      if (holds == 0 || holdsOf(sync, kind) != holds) return;
      Recorder.LockRes lr = res(rec, r, sync, kind, null);
      long t = Recorder.now();
      // an rlock at its old depth; a write lock's one (outermost) hold, exclusive
      rec.emit(r, Kinds.LOCK_ACQUIRED, r.unitId, t, lr.id, kind.equals("rlock") ? holds : 0, 0);
    } catch (Throwable e) {
      rec.fault("Condition.await", e);
    } finally {
      r.busy = false;
    }
  }

  /** How an await ended: awaitNanos returns the time left, timed awaits false on a timeout. */
  private static int awaitOutcome(Object returned, Throwable thrown) {
    if (thrown instanceof InterruptedException) return Kinds.CANCELLED;
    if (thrown != null) return Kinds.ERROR;
    if (returned instanceof Boolean && !((Boolean) returned)) return Kinds.TIMEOUT;
    if (returned instanceof Long && (Long) returned <= 0) return Kinds.TIMEOUT;
    return Kinds.OK;
  }

  /**
   * Before {@code signal} / {@code signalAll} with waiters: {@code sync.notify} on the
   * condition (1 or -1, all), the edge to the waiters' wake. A signal nobody waits for (a
   * queue's put signalling an idle consumer-less condition) writes nothing.
   */
  @DontInline
  public static void signalling(Object cond, Object sync, boolean all) {
    // only the hooked locks' syncs: hasWaiters calls isHeldExclusively, which a program's
    // own AQS may not implement
    if (sync == null || syncKind(sync) == null || !(cond instanceof AbstractQueuedSynchronizer.ConditionObject)) return;
    Recorder rec = Recorder.INSTANCE;
    Ring r = ringOrNull(rec);
    if (r == null) return;
    r.busy = true;
    try {
      AbstractQueuedSynchronizer aqs = (AbstractQueuedSynchronizer) sync;
      AbstractQueuedSynchronizer.ConditionObject c = (AbstractQueuedSynchronizer.ConditionObject) cond;
      if (!aqs.owns(c) || aqsOwner == null || aqsOwner.get(sync) != Thread.currentThread()) return;
      if (!aqs.hasWaiters(c)) return;
      Recorder.LockRes cr = res(rec, r, cond, "condition", cond);
      rec.emit(r, Kinds.SYNC_NOTIFY, r.unitId, Recorder.now(), cr.id, all ? -1 : 1, 0);
    } catch (Throwable e) {
      rec.fault("Condition.signal", e);
    } finally {
      r.busy = false;
    }
  }

  // --- synchronized (WILLOWISP_JAVA_SYNC) ----------------------------------------------

  /** Just after a monitor enter in an instrumented class: lock.acquired, unless a re-entry. */
  @DontInline
  public static void monitorEntered(Object monitor) {
    Recorder rec = Recorder.INSTANCE;
    Ring r = ringAny(rec);
    if (r == null || (Boundaries.gate && r.boundary == null && r.monitorDepth == 0)) return;
    entered(rec, r, monitor);
  }

  private static void entered(Recorder rec, Ring r, Object monitor) {
    if (monitor == null) return;
    r.busy = true;
    try {
      boolean reentry = false;
      int d = r.monitorDepth;
      for (int i = 0; i < d && i < r.monitors.length; i++) reentry |= r.monitors[i] == monitor;
      if (d < r.monitors.length) r.monitors[d] = monitor;
      r.monitorDepth = d + 1;
      if (reentry) return;
      Recorder.LockRes lr = res(rec, r, monitor, "monitor", monitor);
      rec.emit(r, Kinds.LOCK_ACQUIRED, r.unitId, Recorder.now(), lr.id, 0, usedLocation(rec, lr));
    } catch (Throwable e) {
      rec.fault("monitorenter", e);
    } finally {
      r.busy = false;
    }
  }

  /**
   * Just after a monitor enter in an application class instrumented for boundaries: recorded
   * only on a thread inside a boundary instance (or one already holding a monitor it
   * recorded, so that nesting stays balanced).
   */
  @DontInline
  public static void monitorEnteredGated(Object monitor) {
    Recorder rec = Recorder.INSTANCE;
    Ring r = ringAny(rec);
    if (r == null || (r.boundary == null && r.monitorDepth == 0)) return;
    entered(rec, r, monitor);
  }

  /** Just before a monitor exit in an instrumented class: lock.release, unless still held. */
  @DontInline
  public static void monitorExiting(Object monitor) {
    Recorder rec = Recorder.INSTANCE;
    Ring r = ringAny(rec); // ungated: a monitor entered inside a boundary is released after it too
    if (r == null || monitor == null || r.monitorDepth == 0) return;
    r.busy = true;
    try {
      int d = --r.monitorDepth;
      if (d < r.monitors.length) r.monitors[d] = null;
      for (int i = 0; i < d && i < r.monitors.length; i++) {
        if (r.monitors[i] == monitor) return; // an outer entry still holds it
      }
      Recorder.LockRes lr = res(rec, r, monitor, "monitor", monitor);
      rec.emit(r, Kinds.LOCK_RELEASE, r.unitId, Recorder.now(), lr.id, 0, 0);
    } catch (Throwable e) {
      rec.fault("monitorexit", e);
    } finally {
      r.busy = false;
    }
  }

  // --- virtual threads ---------------------------------------------------------------

  /** Virtual-thread starts located so far (racy; only bounds the stack walks). */
  private static int locatedStarts;

  /**
   * Before {@code VirtualThread.start(container)} on the starting thread: the new virtual
   * thread's unit with the starter as its parent and the starter's {@code unit.create},
   * before the thread can run (so its own first event finds the unit defined): one ring
   * row, no allocation but the unit map's entry (see {@link Recorder#virtualStart}).
   */
  @DontInline
  public static void virtualStarting(Thread child) {
    Recorder rec = Recorder.INSTANCE;
    Ring r = ringOrNull(rec);
    if (r == null || child == null) return;
    r.busy = true;
    try {
      // the starter's line for the first starts (a stack walk costs about a microsecond)
      int loc = rec.cfg.allStacks || locatedStarts < LOCATED_USES ? startLocation(rec) : 0;
      rec.virtualStart(r, child, loc);
      // started inside a boundary instance by the program: the thread is inside it too
      Object b = r.boundary;
      if (b instanceof Boundaries.Instance && programStarter(rec) >= 0) {
        Spawns.add(child.getId(), (Boundaries.Instance) b, r.unitId);
      }
    } catch (Throwable e) {
      rec.fault("VirtualThread.start", e);
    } finally {
      r.busy = false;
    }
  }

  // --- platform threads started inside a boundary instance or before JFR runs ----------

  /**
   * Before {@code Thread.start()} / {@code start(ThreadContainer)} of a platform thread, on
   * the starting thread. Two cases, which may coincide:
   *
   * <ul>
   *   <li>Inside a boundary instance, the new thread is noted with it (it is inside from its
   *       start to its end: {@link Spawns}), gets its unit with the starter as parent, and
   *       the starter writes {@code unit.create} at its line (in {@code full} mode with JFR,
   *       JFR's ThreadStart / End write the start and end, not a second create).
   *   <li>Before JFR runs ({@link EarlyThreads}), the program's thread gets its unit with the
   *       starter as parent, the starter's {@code unit.create} at its line and the thread's
   *       {@code unit.start}, all written here. The start is written now, before {@code
   *       start()} proper, rather than from the thread's first hook: nothing the thread does
   *       can come before it (the thread does not exist yet), so the spawn edge is sound,
   *       and it costs no work on the new thread, which may never record anything (and
   *       would then get no ring, so no first hook). A {@code start()} that then fails
   *       (no memory for the thread's stack) leaves a start without an end.
   * </ul>
   *
   * Threads the runtime starts for itself (a pool's workers, the HTTP client's selector:
   * started from JDK code) are not followed; the work handed to a pool is (see {@link
   * #handOff}). Once JFR runs and while no instance is open: four volatile reads.
   */
  @DontInline
  public static void threadStarting(Thread child) {
    boolean early = EarlyThreads.open;
    if ((!early && !anyInside()) || child == null) return;
    Recorder rec = Recorder.INSTANCE;
    Ring r = ringAny(rec);
    if (r == null) return;
    Boundaries.Instance inst = r.boundary instanceof Boundaries.Instance ? (Boundaries.Instance) r.boundary : null;
    if (inst == null && !early) return;
    r.busy = true;
    try {
      if (child.getState() != Thread.State.NEW) return; // start throws: nothing starts
      // the runtime's own threads (a ForkJoinPool's workers, the HTTP client's selector,
      // Timer's thread) without a stack walk; a pool's plain worker Thread with one
      if (child instanceof java.util.concurrent.ForkJoinWorkerThread) return;
      if (child.getClass() != Thread.class && isRuntimeClass(child.getClass().getName())) return;
      int loc = programStarter(rec);
      if (loc < 0) return;
      boolean spawned = inst != null && Spawns.add(child.getId(), inst, r.unitId);
      // noted before start() proper: JFR's ThreadStart, if its recording runs already,
      // comes after this and is skipped (EarlyThreads)
      boolean own = early && EarlyThreads.noteStart(child.getId());
      if (early) EarlyThreads.stats(rec);
      if (!spawned && !own) return; // JDK 21+ calls this twice per start: once is written
      int u = rec.startedUnit(child, r.unitId);
      // the spawn edge analyze follows, now (JFR's ThreadStart comes a second later, or
      // never for a thread started before JFR runs): JFR then writes only the start
      if (!own && !ownUnitEvents(rec)) Spawns.created(u);
      long t = Recorder.now();
      rec.emit(r, Kinds.UNIT_CREATE, r.unitId, t, 0, u, loc);
      if (own) rec.emit(r, Kinds.UNIT_START, u, t, 0, r.unitId, 0);
    } catch (Throwable e) {
      rec.fault("Thread.start", e);
    } finally {
      r.busy = false;
    }
  }

  /**
   * Can any thread be inside a boundary instance now? A handler inside one, a pool thread
   * running a task handed off from one, a thread started inside one: three volatile reads,
   * so hand-offs and thread starts while no instance is open skip the ring lookup.
   */
  static boolean anyInside() {
    return Boundaries.OPEN.get() != 0 || HandOffs.RUNNING.get() != 0 || Spawns.INSIDE.get() != 0;
  }

  /**
   * Does the agent write the units' create / start / end of followed threads itself? Not in
   * {@code full} mode with JFR, whose ThreadStart / End (and VirtualThreadStart / End) do.
   */
  static boolean ownUnitEvents(Recorder rec) {
    return !(rec.cfg.jfr && rec.cfg.mode.equals("full"));
  }

  /**
   * A new thread's ring is made (its first hook, from {@link Recorder}): if it was started
   * inside an instance, it is inside from now on and writes {@code unit.start}. Runs inside
   * the ring's ThreadLocal initialisation: never calls {@code rec.ring()}.
   */
  static void threadBegins(Recorder rec, Ring r, long tid) {
    try {
      Spawns.Entry e = Spawns.take(tid);
      if (e == null) return;
      r.spawnInst = e.inst;
      r.spawnRows = r.written();
      r.boundary = e.inst;
      Spawns.INSIDE.incrementAndGet();
      if (ownUnitEvents(rec)) rec.emit(r, Kinds.UNIT_START, r.unitId, Recorder.now(), 0, e.parent, 0);
    } catch (Throwable err) {
      rec.faults.incrementAndGet();
    }
  }

  /**
   * A thread ends ({@code Thread.exit}, called by the VM; the end of a virtual thread's run):
   * a thread started inside an instance leaves it, writes {@code unit.end}, and its events
   * count for the boundary. One that recorded nothing just drops its entry: its unit and
   * the starter's {@code unit.create} are written, no ring is made for it.
   */
  @DontInline
  public static void threadEnding() {
    if (EarlyThreads.open) earlyEnd();
    if (Spawns.INSIDE.get() == 0 && !Spawns.any()) return;
    Recorder rec = Recorder.INSTANCE;
    if (rec == null) return;
    try {
      long tid = Thread.currentThread().getId();
      if (rec.ringByTid.get(tid) == null) {
        // it recorded nothing: no ring is made (a ring is ~240 KB) for a start and an end
        Spawns.take(tid);
        return;
      }
      Ring r = ringAny(rec);
      if (r == null || r.spawnInst == null) return;
      Boundaries.Instance inst = r.spawnInst;
      r.busy = true;
      try {
        if (ownUnitEvents(rec)) rec.emit(r, Kinds.UNIT_END, r.unitId, Recorder.now(), 0, Kinds.OK, 0);
        inst.declared.events.addAndGet(Math.max(0, r.written() - r.spawnRows));
      } finally {
        r.spawnInst = null;
        if (r.boundary == inst) r.boundary = null;
        Spawns.INSIDE.decrementAndGet();
        r.busy = false;
      }
    } catch (Throwable e) {
      rec.fault("thread end", e);
    }
  }

  /**
   * After {@code Thread.join(...)} returned normally, on the joining thread: if the joined
   * thread has ended, {@code join.done} naming its unit, on a {@code join} resource of that
   * unit (the analyzer's edge from the thread's {@code unit.end}: what the thread did
   * happens before what the joiner does next). A timed join that returned first writes
   * nothing. {@code full} mode, or inside a boundary instance; a join of the thread itself
   * or of one never started (both return at once) writes nothing either.
   */
  @DontInline
  public static void threadJoined(Thread joined) {
    if (joined == null || joined.isAlive() || joined.getState() != Thread.State.TERMINATED) return;
    Recorder rec = Recorder.INSTANCE;
    Ring r = ringAny(rec);
    if (r == null) return;
    if (!rec.cfg.mode.equals("full") && !(r.boundary instanceof Boundaries.Instance)) return;
    r.busy = true;
    try {
      int u = rec.unitFor(joined);
      // the thread itself; or the nested overload of a join just written (join() calls
      // join(0)), or a second join of the same ended thread: the edge is there already
      if (u == r.unitId || u == r.lastJoined) return;
      r.lastJoined = u;
      int res = rec.joinResource(u, joined.getName());
      rec.emit(r, Kinds.JOIN_DONE, r.unitId, Recorder.now(), res, u, 0);
    } catch (Throwable e) {
      rec.fault("Thread.join", e);
    } finally {
      r.busy = false;
    }
  }

  /**
   * A thread whose start the start hook wrote ends before JFR runs: its {@code unit.end},
   * on the recorder's shared ring (the thread may have no ring of its own, and making one,
   * ~240 KB, for one event is not worth it). Noted before the VM's own end of the thread, so
   * JFR's ThreadEnd, if its recording runs already, is skipped.
   */
  private static void earlyEnd() {
    Recorder rec = Recorder.INSTANCE;
    if (rec == null) return;
    try {
      Thread t = Thread.currentThread();
      if (!EarlyThreads.noteEnd(t.getId())) return;
      rec.emitShared(Kinds.UNIT_END, rec.unitFor(t), Recorder.now(), 0, Kinds.OK, 0);
    } catch (Throwable e) {
      rec.fault("thread end", e);
    }
  }

  /**
   * The line that started a thread, or -1 when the runtime did (the first frame outside the
   * agent and the JDK's thread-starting code is JDK code: a pool adding a worker).
   */
  static int programStarter(Recorder rec) {
    StackWalker.StackFrame f =
        WALKER.walk(s -> s.filter(x -> !isStartFrame(x.getClassName())).findFirst().orElse(null));
    if (f == null || isRuntimeClass(f.getClassName())) return -1;
    return Math.max(
        0,
        rec.location(
            Recorder.sourcePath(f.getClassName(), f.getFileName()),
            f.getLineNumber(),
            f.getClassName() + "." + f.getMethodName()));
  }

  /** Frames of the agent and of the JDK's ways to start a thread for a program. */
  static boolean isStartFrame(String c) {
    return c.startsWith("dev.willowisp.")
        || c.equals("java.lang.Thread")
        || c.equals("java.lang.VirtualThread")
        || c.startsWith("java.lang.ThreadBuilders")
        || c.startsWith("java.util.concurrent.ThreadPerTaskExecutor");
  }

  // --- executors: boundaries follow hand-offs -----------------------------------------

  /**
   * A task handed to an executor ({@code ThreadPoolExecutor.execute}, a {@code
   * CompletableFuture} async task's creation) on the calling thread: inside a boundary
   * instance, notes the task with the instance and writes {@code queue.put} (the hand-off
   * edge's source). Outside boundaries one volatile read.
   */
  @DontInline
  public static void handOff(Object task) {
    handOff(task, false);
  }

  /**
   * A periodic task put back on its queue after a run ({@code
   * ScheduledThreadPoolExecutor.reExecutePeriodic}, on the pool thread): followed again
   * while the instance it was handed off in is open.
   */
  @DontInline
  public static void handOffAgain(Object task) {
    handOff(task, true);
  }

  private static void handOff(Object task, boolean again) {
    if (!anyInside() || task == null) return;
    Recorder rec = Recorder.INSTANCE;
    Ring r = ringAny(rec);
    if (r == null || !(r.boundary instanceof Boundaries.Instance)) return;
    if (again && ((Boundaries.Instance) r.boundary).ended) return;
    r.busy = true;
    try {
      long token = HandOffs.add(task, (Boundaries.Instance) r.boundary);
      if (token != 0) rec.emit(r, Kinds.QUEUE_PUT, r.unitId, Recorder.now(), handOffResource(rec), token, 0);
    } catch (Throwable e) {
      rec.fault("executor hand-off", e);
    } finally {
      r.busy = false;
    }
  }

  private static volatile int handOffRes;

  private static int handOffResource(Recorder rec) {
    int id = handOffRes;
    if (id == 0) handOffRes = id = rec.namedResource("queue", "executor hand-off");
    return id;
  }

  /**
   * A task starts on the calling (pool) thread: if it was handed off inside an instance,
   * the thread is inside that instance until {@link #taskDone}, and writes {@code
   * queue.get} (the edge's end). {@code top}: from {@code beforeExecute}, where no other
   * task runs on this thread; one still marked there is ended first (a subclass's
   * {@code afterExecute} that does not call super).
   */
  @DontInline
  public static void taskStarting(Object task, boolean top) {
    if (!HandOffs.any() && (!top || HandOffs.RUNNING.get() == 0)) return;
    Recorder rec = Recorder.INSTANCE;
    Ring r = ringAny(rec);
    if (r == null) return;
    if (top && r.handoffTask != null) taskDone(r.handoffTask);
    if (!HandOffs.any() || r.handoffTask != null || task == null) return;
    r.busy = true;
    try {
      HandOffs.Entry e = HandOffs.take(task);
      if (e == null) return;
      r.handoffTask = task;
      r.handoffInst = e.inst;
      r.handoffPrev = r.boundary;
      r.handoffRows = r.written();
      r.boundary = e.inst;
      HandOffs.RUNNING.incrementAndGet();
      rec.emit(r, Kinds.QUEUE_GET, r.unitId, Recorder.now(), handOffResource(rec), e.token, 0);
    } catch (Throwable e) {
      rec.fault("executor task", e);
    } finally {
      r.busy = false;
    }
  }

  /** The task that {@link #taskStarting} put inside an instance is over: the thread leaves it. */
  @DontInline
  public static void taskDone(Object task) {
    if (HandOffs.RUNNING.get() == 0) return;
    Recorder rec = Recorder.INSTANCE;
    Ring r = ringAny(rec);
    if (r == null || r.handoffTask == null || r.handoffTask != task) return;
    Boundaries.Instance inst = r.handoffInst;
    r.boundary = r.handoffPrev;
    r.handoffTask = null;
    r.handoffInst = null;
    r.handoffPrev = null;
    HandOffs.RUNNING.decrementAndGet();
    if (inst != null) inst.declared.events.addAndGet(Math.max(0, r.written() - r.handoffRows));
  }

  // --- exit ---------------------------------------------------------------------------

  /** True once {@code java.lang.Shutdown.runHooks} carries the exit advice. */
  static volatile boolean exitHooked;

  /**
   * Before the JVM runs its shutdown hooks (advice on {@code Shutdown.runHooks}): JFR's
   * events of the last second, while JFR's own hook has not closed the recording yet, then
   * a flush. Runs on the exiting thread, marked busy so the agent's own lock use is not
   * recorded; the agent's shutdown hook does the rest.
   */
  public static void beforeShutdown() {
    Recorder rec = Recorder.INSTANCE;
    if (rec == null) return;
    Ring r = rec.ring();
    boolean was = r.busy;
    r.busy = true;
    try {
      JfrEvents.markExiting();
      JfrEvents j = JfrEvents.active;
      if (j != null) j.finish(5000);
      rec.flush();
    } catch (Throwable e) {
      rec.fault("exit", e);
    } finally {
      r.busy = was;
    }
  }

  // --- locations ----------------------------------------------------------------------

  private static int usedLocation(Recorder rec, Recorder.LockRes lr) {
    if (!rec.cfg.allStacks && lr.uses >= LOCATED_USES) return 0;
    lr.uses++;
    return callerLocation(rec);
  }

  private static int startLocation(Recorder rec) {
    locatedStarts++;
    return callerLocation(rec);
  }

  /** The innermost frame outside the JDK and the agent, as a location id (0 if none). */
  static int callerLocation(Recorder rec) {
    StackWalker.StackFrame f =
        WALKER.walk(s -> s.filter(x -> !isRuntimeClass(x.getClassName())).findFirst().orElse(null));
    if (f == null) return 0;
    return rec.location(
        Recorder.sourcePath(f.getClassName(), f.getFileName()),
        f.getLineNumber(),
        f.getClassName() + "." + f.getMethodName());
  }

  static boolean isRuntimeClass(String c) {
    return c.startsWith("java.")
        || c.startsWith("jdk.")
        || c.startsWith("sun.")
        || c.startsWith("com.sun.")
        || c.startsWith("javax.")
        || c.startsWith("dev.willowisp.agent.")
        || c.startsWith("dev.willowisp.shaded.");
  }
}
