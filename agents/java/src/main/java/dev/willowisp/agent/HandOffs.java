package dev.willowisp.agent;

import java.lang.ref.ReferenceQueue;
import java.lang.ref.WeakReference;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Work handed to an executor from inside a boundary instance, waiting to run: task object
 * (by identity, weakly held) to the instance and the hand-off's token. The submitting
 * thread adds an entry ({@code ThreadPoolExecutor.execute}, a {@code CompletableFuture}
 * async task's creation); the thread that runs the task takes it ({@code beforeExecute},
 * the async task's {@code run}). Tasks are never wrapped, so the program sees its own
 * objects in queues, {@code afterExecute}, {@code shutdownNow} and rejection handlers.
 *
 * <p>Bounded: at most {@link #MAX} tasks wait at once (more are not followed, counted in
 * {@code stats.handoff_dropped}); an entry whose task was never run goes when the task is
 * collected. Nothing here runs unless a boundary instance handed work off.
 */
final class HandOffs {
  static final int MAX = 16_384;

  /** One waiting task: its instance and the token pairing queue.put with queue.get. */
  static final class Entry {
    final Boundaries.Instance inst;
    final long token;

    Entry(Boundaries.Instance inst, long token) {
      this.inst = inst;
      this.token = token;
    }
  }

  /** A task by identity, weakly. A probe key (no queue) finds the stored one. */
  private static final class Key extends WeakReference<Object> {
    private final int hash;

    Key(Object task, ReferenceQueue<Object> q) {
      super(task, q);
      this.hash = System.identityHashCode(task);
    }

    @Override
    public int hashCode() {
      return hash;
    }

    @Override
    public boolean equals(Object o) {
      if (this == o) return true;
      if (!(o instanceof Key)) return false;
      Object mine = get();
      return mine != null && mine == ((Key) o).get();
    }
  }

  private static final ConcurrentHashMap<Key, Entry> WAITING = new ConcurrentHashMap<>();
  private static final ReferenceQueue<Object> GONE = new ReferenceQueue<>();
  private static final AtomicInteger COUNT = new AtomicInteger();
  private static final AtomicLong TOKENS = new AtomicLong();
  static final AtomicLong DROPPED = new AtomicLong();
  /** Threads running a handed-off task inside its instance now. */
  static final AtomicInteger RUNNING = new AtomicInteger();

  private HandOffs() {}

  /** Are tasks waiting? The worker side's check (one volatile read). */
  static boolean any() {
    return COUNT.get() != 0;
  }

  /**
   * Notes {@code task}, handed off inside {@code inst}; returns its new token, or 0 when it
   * is already noted (the same task through two hooks) or the table is full.
   */
  static long add(Object task, Boundaries.Instance inst) {
    expunge();
    if (COUNT.get() >= MAX) {
      DROPPED.incrementAndGet();
      return 0;
    }
    long token = TOKENS.incrementAndGet();
    if (WAITING.putIfAbsent(new Key(task, GONE), new Entry(inst, token)) != null) return 0;
    COUNT.incrementAndGet();
    return token;
  }

  /** The entry of {@code task}, removed, or null. */
  static Entry take(Object task) {
    Entry e = WAITING.remove(new Key(task, null));
    if (e != null) COUNT.decrementAndGet();
    return e;
  }

  private static void expunge() {
    for (Object k; (k = GONE.poll()) != null; ) {
      if (WAITING.remove(k) != null) COUNT.decrementAndGet();
    }
  }
}
