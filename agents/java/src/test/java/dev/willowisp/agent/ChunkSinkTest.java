package dev.willowisp.agent;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Where chunks go: segment files, the reserve beside them, the fallback from a collector. */
class ChunkSinkTest {
  /** A recorder stand-in: frames a fixed fallback chunk and remembers what it was asked. */
  static final class FakeFramer implements ChunkSink.Framer {
    final List<String> fallbacks = new ArrayList<>();
    final byte[] fallback = chunk(2);
    int faults;
    boolean stopping;

    @Override
    public byte[] fallbackChunk(String why) {
      fallbacks.add(why);
      return fallback;
    }

    @Override
    public void unsay(long drops) {}

    @Override
    public boolean writeNews(Map<Integer, Long> lostByUnit, List<Wtrace.Record> carry, ChunkSink.Append out) {
      return false;
    }

    @Override
    public void fault(String where, String message) {
      faults++;
    }

    @Override
    public void countFault() {
      faults++;
    }

    @Override
    public boolean stopping() {
      return stopping;
    }
  }

  static byte[] chunk(int events) {
    Wtrace.Events ev = new Wtrace.Events(16);
    for (int i = 0; i < events; i++) ev.add(Kinds.LOCK_ACQUIRED, 1, i, 1, 0, 0);
    return Wtrace.chunk(List.of(new Wtrace.Record(Wtrace.R_UNIT, 1).put("name", "main")), ev, Wtrace.CODEC_NONE);
  }

  static Config config(Path dir) {
    Config c = new Config();
    c.out = dir.toString();
    c.service = "svc";
    return c;
  }

  static long pid() {
    return ProcessHandle.current().pid();
  }

  static byte[] concat(byte[]... parts) {
    ByteArrayOutputStream b = new ByteArrayOutputStream();
    for (byte[] p : parts) b.writeBytes(p);
    return b.toByteArray();
  }

  static ChunkSink sink(Config cfg, FakeFramer framer) {
    Set<Thread> agentThreads = ConcurrentHashMap.newKeySet();
    return new ChunkSink(cfg, "0123456789abcdef0123456789abcdef", pid(), agentThreads, framer);
  }

  @Test
  void chunksAreAppendedWholeToOneSegmentBesideAReserveThatCloseRemoves(@TempDir Path dir) throws Exception {
    FakeFramer framer = new FakeFramer();
    ChunkSink sink = sink(config(dir), framer);
    assertEquals(ChunkSink.Next.NEW_SEGMENT, sink.prepare(0));
    Path reserve = dir.resolve(ChunkSink.RESERVE_PREFIX + pid());
    assertEquals(ChunkSink.RESERVE_BYTES, Files.size(reserve));
    byte[] a = chunk(3);
    byte[] b = chunk(5);
    sink.write(a, List.of(), new Wtrace.VUnits(), new Wtrace.Events(1), 0);
    assertEquals(ChunkSink.Next.SAME_SEGMENT, sink.prepare(1));
    sink.write(b, List.of(), new Wtrace.VUnits(), new Wtrace.Events(1), 0);
    assertEquals(1, sink.segment());
    sink.close();
    Path file = dir.resolve("svc-" + pid() + "-01234567-1.wtrace");
    assertArrayEquals(concat(Wtrace.fileHeader(), a, b), Files.readAllBytes(file));
    assertFalse(Files.exists(reserve));
    assertEquals(ChunkSink.Next.NOWHERE, sink.prepare(2)); // closed for good
    assertEquals(0, framer.faults);
    assertTrue(framer.fallbacks.isEmpty());
  }

  @Test
  void anUnreachableCollectorFallsBackToAFileThatOpensWithTheFramersChunk(@TempDir Path dir) throws Exception {
    FakeFramer framer = new FakeFramer();
    Config cfg = config(dir);
    cfg.collector = "unix:" + dir.resolve("nobody-listens.sock");
    ChunkSink sink = sink(cfg, framer);
    assertEquals(ChunkSink.Next.NEW_SEGMENT, sink.prepare(0));
    assertEquals(1, framer.fallbacks.size());
    assertTrue(framer.fallbacks.get(0).startsWith("cannot reach collector unix:"), framer.fallbacks.get(0));
    byte[] a = chunk(4);
    sink.write(a, List.of(), new Wtrace.VUnits(), new Wtrace.Events(1), 0);
    framer.stopping = true;
    sink.close();
    Path file = dir.resolve("svc-" + pid() + "-01234567-1.wtrace");
    assertArrayEquals(concat(Wtrace.fileHeader(), framer.fallback, a), Files.readAllBytes(file));
    assertEquals(1, sink.segment());
  }

  @Test
  void statusNamesTheSegmentFile(@TempDir Path dir) throws Exception {
    ChunkSink sink = sink(config(dir), new FakeFramer());
    sink.prepare(0);
    Path file = dir.resolve("svc-" + pid() + "-01234567-1.wtrace");
    assertEquals(Map.of("kind", "file", "path", file.toString()), sink.status());
    sink.close();
  }

  @Test
  void statusCountsEveryFailedReconnectPastTheSchedule(@TempDir Path dir) throws Exception {
    FakeFramer framer = new FakeFramer();
    Config cfg = config(dir);
    cfg.collector = "unix:" + dir.resolve("nobody-listens.sock");
    ChunkSink sink = sink(cfg, framer);
    sink.prepare(0);
    Path file = dir.resolve("svc-" + pid() + "-01234567-1.wtrace");
    Map<String, Object> status = sink.status();
    assertEquals(List.of("stream", cfg.collector, "file", file.toString(), 0L),
        List.of(status.get("kind"), status.get("collector"), status.get("state"), status.get("file"), status.get("retries")));
    // the schedule's delays end after five (every later one is the longest): the count goes on
    for (long n = 1; n <= 7; n++) {
      sink.prepare(Recorder.now() + 3_600_000_000_000L); // past any delay
      assertEquals(n, sink.status().get("retries"));
    }
    assertEquals("file", sink.status().get("state"));
    framer.stopping = true;
    sink.close();
  }
}
