package dev.willowisp.agent;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** Threads whose units the hooks write before JFR runs: each written once, bounded. */
class EarlyThreadsTest {
  @Test
  void eachThreadIsWrittenOnceAndTheTableIsBounded() {
    // a start, noted once (JDK 21+ calls the start hook twice per start)
    assertFalse(EarlyThreads.startedByHook(5_000_001L));
    assertFalse(EarlyThreads.noteEnd(5_000_001L)); // not started by the hook: JFR's to end
    assertTrue(EarlyThreads.noteStart(5_000_001L));
    assertFalse(EarlyThreads.noteStart(5_000_001L));
    assertTrue(EarlyThreads.startedByHook(5_000_001L));
    assertFalse(EarlyThreads.endedByHook(5_000_001L));
    // its end, once; both stay known, for JFR events of the same thread arriving later
    assertTrue(EarlyThreads.noteEnd(5_000_001L));
    assertFalse(EarlyThreads.noteEnd(5_000_001L));
    assertTrue(EarlyThreads.endedByHook(5_000_001L));
    assertTrue(EarlyThreads.startedByHook(5_000_001L));
    // past MAX entries nothing more is noted (the hooks then write nothing): counted
    int dropped = EarlyThreads.DROPPED.get();
    long tid = 6_000_000L;
    while (EarlyThreads.noteStart(tid)) tid++;
    assertEquals(dropped + 1, EarlyThreads.DROPPED.get());
    assertTrue(tid - 6_000_000L < EarlyThreads.MAX);
    assertFalse(EarlyThreads.startedByHook(tid));
  }
}
