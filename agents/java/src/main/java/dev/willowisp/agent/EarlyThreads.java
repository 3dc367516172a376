package dev.willowisp.agent;

import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Platform threads the program starts before JFR's recording runs ({@code full} mode with
 * JFR). JFR starts 0.5-0.9 s after premain, so a short program's first threads get no
 * {@code jdk.ThreadStart} (and, if they end by then, no {@code jdk.ThreadEnd}): no spawn
 * edge from their starter, and an access by the starter before {@code start()} looks
 * unordered with one by the thread. Until JFR is known to run, the {@code Thread.start} /
 * {@code Thread.exit} hooks write those units' create, start and end themselves
 * ({@link Hooks#threadStarting}, {@link Hooks#threadEnding}).
 *
 * <p>"Known to run" is the stream's first flush ({@link #close}): JFR delivers a flush only
 * from a running recording, so a thread started or ending after the flag went down is seen
 * by JFR. Between the recording's real start and that flush both may write; the thread ids
 * the hooks wrote for are kept here, and JFR's handlers write nothing for them. The hook
 * notes an id before the thread's {@code start()} / end runs, and JFR's event for it is
 * emitted after that and delivered later still, so the check never misses. Ids are kept for
 * the whole run (thread ids are never reused): only threads started while the flag is up
 * are noted, at most {@link #MAX}; past that the hooks write nothing more (counted in
 * {@code stats.early_threads_dropped}) and such a thread is left to JFR alone.
 */
final class EarlyThreads {
  static final int MAX = 16_384;

  /**
   * Up from premain until JFR's first flush, in {@code full} mode with JFR and the hooks;
   * never up otherwise. Set by {@link Agent} at start, lowered once by {@link JfrEvents}.
   * The one read the hooks make per thread start and end once JFR runs.
   */
  static volatile boolean open;

  /** Threads whose unit.create and unit.start the start hook wrote. */
  private static final Set<Long> STARTED = ConcurrentHashMap.newKeySet();
  /** Threads whose unit.end the exit hook wrote. */
  private static final Set<Long> ENDED = ConcurrentHashMap.newKeySet();
  /** Entries in both sets (the bound). */
  private static final AtomicInteger COUNT = new AtomicInteger();
  /** Starts not followed because the sets were full. */
  static final AtomicInteger DROPPED = new AtomicInteger();

  private EarlyThreads() {}

  /**
   * JFR's recording has delivered a flush: it records every thread start and end now. The
   * first call says when in {@code stats.jfr_flushed_ns} (monotonic): a thread started
   * after that is JFR's alone.
   */
  static void close(Recorder rec) {
    if (!open) return;
    open = false;
    rec.statsExtra.put("jfr_flushed_ns", Recorder.now());
  }

  /** Notes that the hook writes thread {@code tid}'s create and start; false: it must not. */
  static boolean noteStart(long tid) {
    if (COUNT.get() >= MAX) {
      DROPPED.incrementAndGet();
      return false;
    }
    if (!STARTED.add(tid)) return false; // a second hook call for the same start (JDK 21+)
    COUNT.incrementAndGet();
    return true;
  }

  /** Notes that the hook writes thread {@code tid}'s end; false when it started unnoted or already ended. */
  static boolean noteEnd(long tid) {
    if (!STARTED.contains(tid) || !ENDED.add(tid)) return false;
    COUNT.incrementAndGet();
    return true;
  }

  /** Did the start hook write this thread's create and start? (JFR then writes neither) */
  static boolean startedByHook(long tid) {
    return COUNT.get() != 0 && STARTED.contains(tid);
  }

  /** Did the exit hook write this thread's end? */
  static boolean endedByHook(long tid) {
    return COUNT.get() != 0 && ENDED.contains(tid);
  }

  /** Puts the counts into the stats record: {@code early_threads}, {@code early_threads_dropped}. */
  static void stats(Recorder rec) {
    rec.statsExtra.put("early_threads", (long) STARTED.size());
    int d = DROPPED.get();
    if (d != 0) rec.statsExtra.put("early_threads_dropped", (long) d);
  }
}
