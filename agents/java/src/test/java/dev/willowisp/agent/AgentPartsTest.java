package dev.willowisp.agent;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.Map;
import org.junit.jupiter.api.Test;

/** Settings, trace context and the per-thread ring: the parts the end-to-end tests rely on. */
class AgentPartsTest {
  @Test
  void garbageSettingsFallBackToDefaultsAndAreReported() {
    Config c =
        Config.fromEnv(
            Map.of(
                "WILLOWISP_OUT", "/tmp/x",
                "WILLOWISP_MODE", "sideways",
                "WILLOWISP_TRACE_RATIO", "2.5",
                "WILLOWISP_FLUSH_MS", "0",
                "WILLOWISP_CLOCK_OFFSET_NS", "-12"),
            "com.example.Shop --port 1");
    assertEquals("full", c.mode);
    assertEquals(1.0, c.traceRatio);
    assertEquals(50, c.flushMs);
    assertEquals(-12L, c.clockOffsetNs);
    assertEquals(3, c.problems.size());
    assertEquals("Shop", c.service);
    assertTrue(c.wanted("com.example.Shop --port 1"));
  }

  @Test
  void anEncodedChunkTellsHowManyEventsItHolds() {
    // the count of a chunk refused after it was encoded (an unacknowledged stream chunk)
    java.util.List<Wtrace.Record> recs =
        java.util.List.of(
            new Wtrace.Record(Wtrace.R_UNIT, 3).put("name", "main").put("java_tid", 1L),
            new Wtrace.Record(Wtrace.R_FAULT, 1).put("message", "x").put("where", "write"));
    Wtrace.Events ev = new Wtrace.Events(16);
    for (int i = 0; i < 1000; i++) ev.add(Kinds.LOCK_ACQUIRED, 3, i, 1, 0, 0);
    assertEquals(1000L, Wtrace.eventCount(Wtrace.chunk(recs, ev, Wtrace.CODEC_DEFLATE)));
    assertEquals(1000L, Wtrace.eventCount(Wtrace.chunk(recs, ev, Wtrace.CODEC_NONE)));
    assertEquals(0L, Wtrace.eventCount(Wtrace.chunk(recs, new Wtrace.Events(16), Wtrace.CODEC_NONE)));
    assertEquals(0L, Wtrace.eventCount(new byte[] {1, 2, 3}));
    // virtual threads' unit records in columns parse as records (the count skips them)
    Wtrace.VUnits v = new Wtrace.VUnits();
    for (int i = 0; i < 100; i++) v.add(10 + i, 1_000_000L + i, 3);
    assertEquals(1000L, Wtrace.eventCount(Wtrace.chunk(recs, v, ev, Wtrace.CODEC_DEFLATE)));
    v.keepLast(10);
    assertEquals(10, v.n);
    assertEquals(1_000_090L, v.tid[0]);
  }

  @Test
  void virtualThreadUnitsAreKeptInPagesDroppedOnceEmpty() throws Exception {
    TidUnits m = new TidUnits();
    assertEquals(0, m.putIfAbsent(5, 7));
    assertEquals(7, m.putIfAbsent(5, 8)); // the first stays
    assertEquals(7, m.get(5));
    assertEquals(0, m.get(6));
    // four threads put 10,000 ids each (interleaved), then all are removed
    Thread[] ts = new Thread[4];
    for (int k = 0; k < 4; k++) {
      int kk = k;
      ts[k] = new Thread(() -> {
        for (int i = kk; i < 40_000; i += 4) assertEquals(0, m.putIfAbsent(100 + i, 1 + i));
      });
      ts[k].start();
    }
    for (Thread t : ts) t.join();
    for (int i = 0; i < 40_000; i++) assertEquals(1 + i, m.get(100 + i));
    assertTrue(m.pages() >= 9);
    for (int i = 0; i < 40_000; i++) m.remove(100 + i);
    m.remove(5);
    assertEquals(0, m.get(5));
    assertEquals(0, m.get(20_000));
    // every page whose ids were all handed out is gone (the last one may stay)
    assertTrue(m.pages() <= 1, "pages left: " + m.pages());
    assertEquals(0, m.putIfAbsent(41_000, 3)); // a dropped range can be used again
    assertEquals(3, m.get(41_000));
  }

  @Test
  void chunksAreDeflatedUnlessTheEventRateIsHigh() {
    assertEquals("auto", Config.fromEnv(Map.of(), "").codec);
    Config bad = Config.fromEnv(Map.of("WILLOWISP_JAVA_CODEC", "lz4"), "");
    assertEquals("auto", bad.codec);
    assertEquals(1, bad.problems.size());
    assertEquals("none", Config.fromEnv(Map.of("WILLOWISP_JAVA_CODEC", "None"), "").codec);
    long ms = 1_000_000L;
    // 50 ms flushes: up to 5000 events a chunk is 100k events/s: deflated
    assertEquals(Wtrace.CODEC_DEFLATE, Flusher.chooseCodec("auto", 5000, 50 * ms, 50));
    assertEquals(Wtrace.CODEC_NONE, Flusher.chooseCodec("auto", 5001, 50 * ms, 50));
    // an early flush (a ring three quarters full) is judged over one whole period
    assertEquals(Wtrace.CODEC_DEFLATE, Flusher.chooseCodec("auto", 4000, 3 * ms, 50));
    assertEquals(Wtrace.CODEC_DEFLATE, Flusher.chooseCodec("auto", 20_000, 400 * ms, 50));
    assertEquals(Wtrace.CODEC_DEFLATE, Flusher.chooseCodec("deflate", 1_000_000, 50 * ms, 50));
    assertEquals(Wtrace.CODEC_NONE, Flusher.chooseCodec("none", 1, 50 * ms, 50));
  }

  @Test
  void buildToolsAndUnlistedMainsAreNotRecorded() {
    Config c = Config.fromEnv(Map.of("WILLOWISP_OUT", "/tmp/x"), "");
    assertFalse(c.wanted("org.codehaus.plexus.classworlds.launcher.Launcher -q package"));
    assertFalse(c.wanted("com.sun.tools.javac.Main -d out A.java"));
    assertTrue(c.wanted("/srv/shop.jar"));
    Config only = Config.fromEnv(Map.of("WILLOWISP_OUT", "/x", "WILLOWISP_JAVA_INCLUDE", "shop"), "");
    assertTrue(only.wanted("/srv/shop.jar"));
    assertFalse(only.wanted("com.example.Billing"));
    Config off = Config.fromEnv(Map.of("WILLOWISP_OUT", "/x", "WILLOWISP_DISABLED", "1"), "");
    assertFalse(off.wanted("/srv/shop.jar"));
    assertEquals("shop", Config.fromEnv(Map.of(), "/srv/shop.jar").service);
    String source = "jdk.compiler/com.sun.tools.javac.launcher.Main Shop.java --port 1";
    assertTrue(c.wanted(source), "a source-file program is a program, not javac");
    assertEquals("Shop", Config.fromEnv(Map.of(), source).service);
  }

  @Test
  void traceparentParsesAndRejects() {
    TraceContext t = TraceContext.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    assertNotNull(t);
    assertTrue(t.sampled);
    assertEquals("4bf92f3577b34da6a3ce929d0e0e4736", t.traceId);
    TraceContext child = t.child();
    assertEquals(t.traceId, child.traceId);
    assertFalse(child.spanId.equals(t.spanId));
    assertEquals(55, child.header().length());
    assertNull(TraceContext.parse("00-zz-yy-01"));
    assertNull(TraceContext.parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
    assertNull(TraceContext.parse(null));
    assertFalse(TraceContext.root(0.0).sampled);
    assertTrue(TraceContext.root(1.0).sampled);
  }

  @Test
  void fullRingDropsAndCountsInsteadOfBlocking() {
    Ring r = new Ring(16, 1, Thread.currentThread(), false);
    int wakes = 0;
    for (int i = 0; i < 20; i++) {
      if (!r.add(Kinds.LOCK_ACQUIRED, 1, i, 1, 0, 0)) wakes++;
    }
    assertEquals(1, wakes, "the flusher is woken once, at three quarters");
    assertEquals(4, r.dropped);
    Wtrace.Events ev = new Wtrace.Events(4);
    assertEquals(16, r.drainTo(ev));
    assertEquals(15L, ev.time[15]);
    assertTrue(r.add(Kinds.LOCK_RELEASE, 1, 99, 1, 0, 0));
    assertEquals(1, r.pending());
  }

  @Test
  void targetsKeepQueryKeysNotValues() {
    assertEquals("/a?x=&y=", HttpHooks.target("/a", "x=1&y=2"));
    assertEquals("/", HttpHooks.target("", null));
    assertEquals("com/x/Foo.java", Recorder.sourcePath("com.x.Foo$Bar", null));
    assertEquals("Main.java", Recorder.sourcePath("Main", "Main.java"));
  }
}
