package dev.willowisp.agent;

import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Threads started from inside a boundary instance: the new thread is inside that instance
 * from its start to its end (as the Python agent's threads inherit the boundary).
 *
 * <p>The starting thread notes the new thread's id with the instance ({@code Thread.start},
 * {@code VirtualThread.start}); the new thread takes the entry when its ring is made (its
 * first hook) or when it ends ({@code Thread.exit}, the end of a virtual thread's run),
 * whichever comes first. Keyed by thread id (never reused), so the sampler can tell that a
 * thread that has not recorded anything yet is inside. Bounded: at most {@link #MAX} started
 * threads waiting at once (more are not followed, counted in {@code stats.handoff_dropped}).
 * Nothing here runs unless a thread inside an instance started one.
 */
final class Spawns {
  static final int MAX = 16_384;

  /** A started thread's instance and its starter's unit. */
  static final class Entry {
    final Boundaries.Instance inst;
    final int parent;

    Entry(Boundaries.Instance inst, int parent) {
      this.inst = inst;
      this.parent = parent;
    }
  }

  private static final ConcurrentHashMap<Long, Entry> WAITING = new ConcurrentHashMap<>();
  private static final AtomicInteger COUNT = new AtomicInteger();
  /** Started threads inside an instance now (their ring carries it). */
  static final AtomicInteger INSIDE = new AtomicInteger();

  private Spawns() {}

  /**
   * Units whose {@code unit.create} the start hook wrote in {@code full} mode with JFR:
   * JFR's ThreadStart writes only their {@code unit.start}. At most {@link #MAX} (a thread
   * started before JFR runs never gets one; past that JFR writes a second create).
   */
  private static final java.util.Set<Integer> CREATED = ConcurrentHashMap.newKeySet();

  static void created(int unit) {
    if (CREATED.size() < MAX) CREATED.add(unit);
  }

  /** Did the start hook write this unit's create? (once: the entry goes) */
  static boolean createdByHook(int unit) {
    return !CREATED.isEmpty() && CREATED.remove(unit);
  }

  /** Are started threads waiting to take their instance? (one volatile read) */
  static boolean any() {
    return COUNT.get() != 0;
  }

  /** Notes thread {@code tid}, started inside {@code inst}; false when full or already noted. */
  static boolean add(long tid, Boundaries.Instance inst, int parent) {
    if (COUNT.get() >= MAX) {
      HandOffs.DROPPED.incrementAndGet();
      return false;
    }
    if (WAITING.putIfAbsent(tid, new Entry(inst, parent)) != null) return false;
    COUNT.incrementAndGet();
    return true;
  }

  /** Is thread {@code tid} noted and not yet begun? */
  static boolean waiting(long tid) {
    return COUNT.get() != 0 && WAITING.containsKey(tid);
  }

  /** The entry of thread {@code tid} (its instance and starter), removed, or null. */
  static Entry take(long tid) {
    if (COUNT.get() == 0) return null;
    Entry inst = WAITING.remove(tid);
    if (inst != null) COUNT.decrementAndGet();
    return inst;
  }
}
