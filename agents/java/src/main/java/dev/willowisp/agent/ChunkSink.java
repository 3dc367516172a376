package dev.willowisp.agent;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Where the recorder's chunks go: a segment file ({@code <service>-<pid>-<id>-<n>.wtrace}
 * under {@code WILLOWISP_OUT}, a new one past 256 MiB), or the native stream to a collector
 * ({@code WILLOWISP_COLLECTOR}) with its fallback to a file and its reconnects, and what a
 * full disk costs.
 *
 * <p>The {@link Recorder} frames chunks; this class only places them. Per flush it calls
 * {@link #prepare} (open, reconnect or rotate; a new segment must start with the process
 * record), then {@link #write}; before framing it takes what refused chunks left
 * ({@link #sayLost}, {@link #takeCarriedUnits}, {@link #takeProcessDue}, {@link
 * #takeCarried}); at exit {@link #close}. The few chunks the sink itself needs (the first
 * chunk of a fallback file, the news of a loss) it asks the recorder to frame ({@link
 * Framer}), since sequence numbers, counters and records are the recorder's.
 *
 * <p>A full disk: a write is whole or nothing (cut back to the chunk boundary), so the file
 * stays readable; a refused chunk's events are counted per unit and said in the next chunk
 * written, its definition records carried to that chunk, so later events still name their
 * units and resources. The trade-off: what was refused is lost, not retried; the loss is
 * said, in the trace when anything fits (a 64 KiB reserve file is given up at the first
 * refusal to make room for that news) and on stderr at exit in any case.
 *
 * <p>Not thread-safe: every method is called with the recorder's flush lock held.
 */
final class ChunkSink {
  static final long SEGMENT_BYTES = 256L * 1024 * 1024;
  /** Definition records of refused chunks kept for the next chunk written, at most. */
  static final int MAX_CARRIED = 100_000;
  /** The reserve's size and name prefix ({@code willowisp run} removes a killed JVM's). */
  static final int RESERVE_BYTES = 64 * 1024;
  static final String RESERVE_PREFIX = ".willowisp-reserve-";

  /**
   * What the sink asks of the recorder, which owns sequence numbers, the event and drop
   * counters and the records; all called with the flush lock held.
   */
  interface Framer {
    /**
     * The first chunk of a fallback file: the process record, a fault saying why the
     * collector is gone (none for {@code why} null: it said bye), a clock anchor; its events
     * counted and numbered.
     */
    byte[] fallbackChunk(String why);

    /** Drops said in a chunk the file system refused: no longer counted as said. */
    void unsay(long drops);

    /**
     * Frames the news of a loss (one agent.drop per unit in lostByUnit) and appends it with
     * out; records it does not send (queued definitions) go to carry, in order. True when
     * the news was written; false when not even that fits.
     */
    boolean writeNews(Map<Integer, Long> lostByUnit, List<Wtrace.Record> carry, Append out);

    /** Counts and records a fault inside the agent. */
    void fault(String where, String message);

    /** Counts a fault that cannot be recorded (there is no place to write it). */
    void countFault();

    /** The recorder is stopping (no more reconnects). */
    boolean stopping();
  }

  /** Appends a whole chunk or nothing; IOException: the file system refused it. */
  interface Append {
    void write(byte[] chunk) throws IOException;
  }

  /** Where the next chunk goes, as {@link #prepare} found it. */
  enum Next {
    /**
     * Nowhere: no file could be made (also: no new segment after the last one), or the sink
     * is closed. For good.
     */
    NOWHERE,
    /** The current segment, as before. */
    SAME_SEGMENT,
    /** A new segment (file or stream): its first chunk carries the process record. */
    NEW_SEGMENT
  }

  private final Config cfg;
  private final String processId;
  private final long pid;
  /** The recorder's set of its own threads (the stream's reader thread joins it). */
  private final Set<Thread> agentThreads;
  private final Framer framer;

  // All state below is the flusher's, guarded by the recorder's flush lock.
  /** The current segment's number (1, 2, ...; files and stream connections alike). */
  private int segment;
  private long segmentBytes;
  private RandomAccessFile outFile;
  /** The current segment file's path (for the line said at exit). */
  private Path outPath;
  /** Nothing can be written any more (no file could be made, or closed). Never reset. */
  private boolean broken;
  // A full disk: see refused().
  /** The reserve file, deleted at the first refusal; null when none (or gone). */
  private Path reserve;
  private boolean reserveTried;
  /** Events of refused chunks, per unit, not yet said in a written chunk. */
  private final Map<Integer, Long> lostByUnit = new HashMap<>();
  /** Definition and fault records of refused chunks, for the next chunk written. */
  private final ArrayList<Wtrace.Record> carry = new ArrayList<>();
  /** The virtual threads' unit records of refused chunks, for the next chunk written. */
  private final Wtrace.VUnits carryV = new Wtrace.VUnits();
  /** Events in chunks the file system refused (said on stderr at exit). */
  private long lostOnWrite;
  /** The refusal of the current spell of refused writes (null: the last write went in). */
  private String writeError;
  /** The first refusal's reason (said at exit). */
  private String refusal;
  /** The next chunk carries the process record again (after a refused one). */
  private boolean processDue;
  /** The native stream when chunks go to a collector (WILLOWISP_COLLECTOR); else null. */
  private Stream stream;
  /**
   * Failed reconnection attempts since the last fallback; the next comes 1, 2, 4, 8, 16 s,
   * then every 30 s after the last, without end (each delay at most WILLOWISP_STREAM_RETRY_S).
   */
  private int reconnects;
  private long nextReconnectNs;
  /** Failed reconnects since the last good connection, for ctl status; unlike reconnects, never capped. */
  private long retries;
  /** The file the collector said (hello) it writes the last connection into. */
  private String collectorFile = "";

  ChunkSink(Config cfg, String processId, long pid, Set<Thread> agentThreads, Framer framer) {
    this.cfg = cfg;
    this.processId = processId;
    this.pid = pid;
    this.agentThreads = agentThreads;
    this.framer = framer;
  }

  /**
   * Where chunks go now, for the control channel's status ({@code sink}, the same fields as
   * the other agents): the segment file, or the collector with its state ({@code
   * streaming}, or {@code file} while the reconnects go on), the fallback file once one was
   * opened, and the failed reconnects since the last good connection.
   */
  Map<String, Object> status() {
    Map<String, Object> out = new LinkedHashMap<>();
    String path = outPath != null ? outPath.toString() : "";
    if (cfg.collector.isEmpty()) {
      out.put("kind", "file");
      out.put("path", path);
      return out;
    }
    out.put("kind", "stream");
    out.put("collector", cfg.collector);
    out.put("state", stream != null ? "streaming" : "file");
    out.put("collector_file", collectorFile);
    out.put("file", path);
    out.put("unacked", stream != null ? (long) stream.unacked() : 0L);
    out.put("retries", retries);
    return out;
  }

  /** The current segment's number (the process record says it). */
  int segment() {
    return segment;
  }

  // --- what refused chunks left, for the next chunk ------------------------------------

  /**
   * Adds to ev, at time t, one agent.drop per unit with events of refused chunks not yet
   * said, and forgets them; returns their sum (for the recorder's drop count).
   */
  long sayLost(Wtrace.Events ev, long t) {
    long sum = 0;
    if (!lostByUnit.isEmpty()) { // lost with a chunk the file system refused: said now
      for (Map.Entry<Integer, Long> e : lostByUnit.entrySet()) {
        ev.add(Kinds.AGENT_DROP, e.getKey(), t, 0, e.getValue(), 0);
        sum += e.getValue();
      }
      lostByUnit.clear();
    }
    return sum;
  }

  /** Moves the virtual threads' unit records of refused chunks to into. */
  void takeCarriedUnits(Wtrace.VUnits into) {
    if (carryV.n > 0) {
      into.addAll(carryV);
      carryV.n = 0;
    }
  }

  /** Whether the next chunk must say who again (the previous one was refused); clears it. */
  boolean takeProcessDue() {
    boolean due = processDue;
    processDue = false;
    return due;
  }

  /** Moves the definition and fault records of refused chunks to recs. */
  void takeCarried(List<Wtrace.Record> recs) {
    if (!carry.isEmpty()) {
      recs.addAll(carry);
      carry.clear();
    }
  }

  // --- placing a chunk -----------------------------------------------------------------

  /**
   * Before a chunk is framed at time t: back on the collector when a reconnect is due, a
   * first segment (stream or file) when there is none, a new one past SEGMENT_BYTES.
   * IOException: closing a file failed (the recorder counts it as a fault).
   */
  Next prepare(long t) throws IOException {
    boolean newSegment = false;
    if (!broken && stream == null && outFile != null && reconnectDue(t)) {
      Stream st = openStream();
      if (st != null) { // back on the collector: the file's segment ends here
        outFile.close();
        outFile = null;
        stream = st;
        newSegment = true;
      }
    }
    if (!broken && stream == null && outFile == null) {
      openSink();
      newSegment = true;
    }
    if (broken) return Next.NOWHERE;
    if (newSegment || segmentBytes > SEGMENT_BYTES) {
      if (!newSegment) {
        closeSink();
        openSink();
        if (broken) return Next.NOWHERE;
      }
      processDue = false; // the new segment's process record says who
      return Next.NEW_SEGMENT;
    }
    return Next.SAME_SEGMENT;
  }

  /** A chunk of nRing program events with nowhere to go: lost, said at exit on a full disk. */
  void discard(int nRing) {
    if (refusal != null) lostOnWrite += nRing; // no segment on a full disk: said at exit
  }

  /**
   * Sends or appends one framed chunk. Its contents (recs, vunits, ev, whose first nRing
   * events are the program's) are what a refusal keeps and counts; the recorder may reuse
   * them once this returns.
   */
  void write(byte[] chunk, List<Wtrace.Record> recs, Wtrace.VUnits vunits, Wtrace.Events ev, int nRing)
      throws IOException {
    if (stream != null) {
      send(chunk);
      return;
    }
    try {
      writeWhole(chunk);
      writeError = null;
    } catch (IOException e) {
      refused(e, recs, vunits, ev, nRing);
    }
  }

  /**
   * At exit (after the last flush): the stream says bye (what it did not acknowledge goes to
   * the fallback file), the file is closed, the reserve removed, and the one line of a full
   * disk said. Nothing is written after this.
   */
  void close() {
    try {
      if (stream != null) {
        Stream st = stream;
        String left = st.close();
        stream = null;
        if (left != null) fallBack(left, st.takeUnacked(), st.saidBye());
      }
    } catch (Throwable e) {
      framer.countFault();
    }
    try {
      if (outFile != null) outFile.close();
    } catch (IOException ignored) {
      // closing is best effort
    }
    outFile = null;
    broken = true;
    dropReserve();
    if (lostOnWrite > 0) sayLostAtExit();
  }

  /**
   * The one line a full disk costs the program's stderr (at exit): nothing is lost
   * silently, and when the disk stayed full there is nowhere else to say it.
   */
  private void sayLostAtExit() {
    try {
      String where = outPath != null ? outPath.toString() : cfg.out;
      System.err.println(
          "willowisp: " + lostOnWrite + " events of " + cfg.service + " (pid " + pid
              + ") could not be written to " + where + ": " + refusal);
      System.err.flush();
    } catch (Throwable ignored) {
      // stderr itself may be gone
    }
  }

  // --- a full disk -----------------------------------------------------------------------

  /**
   * Appends a whole chunk to the segment file or nothing: a write that fails part-way (a
   * full disk: ENOSPC, EFBIG, EDQUOT) is cut off again, so the file ends at a chunk boundary
   * and a later chunk that fits follows the last whole one directly.
   */
  private void writeWhole(byte[] chunk) throws IOException {
    long start = segmentBytes;
    try {
      outFile.write(chunk);
    } catch (IOException e) {
      try {
        outFile.setLength(start); // the file pointer follows
        outFile.seek(start);
      } catch (Throwable ignored) {
        // the reader resynchronises on the next chunk's magic
      }
      throw e;
    }
    segmentBytes = start + chunk.length;
  }

  /**
   * A chunk the file system refused (cut off again by writeWhole). Its events are dropped
   * and counted per unit, said in the next chunk that gets written (and on stderr at exit);
   * its definition and fault records are kept for that chunk, so later events still name
   * their units and resources. One fault per spell of refusals; at the first, the reserve
   * is deleted and a small chunk with only the news of the loss written at once.
   */
  private void refused(IOException err, List<Wtrace.Record> recs, Wtrace.VUnits vunits, Wtrace.Events ev, int nRing) {
    for (int i = 0; i < nRing; i++) lostByUnit.merge(ev.unit[i], 1L, Long::sum);
    long drops = 0;
    for (int i = nRing; i < ev.n; i++) {
      if ((ev.kind[i] & 0xff) == Kinds.AGENT_DROP) {
        lostByUnit.merge(ev.unit[i], ev.arg[i], Long::sum);
        drops += ev.arg[i];
      }
    }
    framer.unsay(drops); // said again when the drop events are written
    lostOnWrite += nRing;
    for (Wtrace.Record r : recs) {
      if (r.type == Wtrace.R_UNIT || r.type == Wtrace.R_RESOURCE || r.type == Wtrace.R_LOCATION || r.type == Wtrace.R_FAULT) {
        carry.add(r);
      }
    }
    trimCarry();
    carryV.addAll(vunits);
    if (carryV.n > MAX_CARRIED) carryV.keepLast(MAX_CARRIED);
    processDue = true;
    noteRefusal(err);
    if (dropReserve()) writeNews();
  }

  /** One fault per spell of refused writes; the first refusal's reason is said at exit. */
  private void noteRefusal(IOException err) {
    if (writeError == null) {
      String why = err.getMessage() == null ? err.getClass().getName() : err.getMessage();
      writeError = why;
      if (refusal == null) refusal = why;
      framer.fault("write", why);
    }
  }

  private void trimCarry() {
    if (carry.size() > MAX_CARRIED) carry.subList(0, carry.size() - MAX_CARRIED).clear();
  }

  /** The news of a loss (framed by the recorder) in the room the reserve left. */
  private void writeNews() {
    if (outFile == null) return;
    if (framer.writeNews(lostByUnit, carry, this::writeWhole)) {
      lostByUnit.clear();
      processDue = false;
    } else { // not even that fits: the line at exit says it
      trimCarry();
    }
  }

  /**
   * Room kept for the news of a full disk: a 64 KiB file beside the first segment, deleted
   * when the file system first refuses a chunk. Written as zeros (the JDK has no
   * fallocate), which allocates it on tmpfs and ext4 alike; none if it cannot be made.
   */
  private void makeReserve(Path dir) {
    reserveTried = true;
    Path path = dir.resolve(RESERVE_PREFIX + pid);
    try (RandomAccessFile f = new RandomAccessFile(path.toFile(), "rw")) {
      f.setLength(0);
      f.write(new byte[RESERVE_BYTES]);
      reserve = path;
    } catch (Throwable e) {
      try {
        Files.deleteIfExists(path);
      } catch (Throwable ignored) {
        // no reserve, then
      }
    }
  }

  private boolean dropReserve() {
    Path path = reserve;
    reserve = null;
    if (path == null) return false;
    try {
      Files.delete(path);
      return true;
    } catch (Throwable e) {
      return false;
    }
  }

  // --- a segment file, or the native stream ----------------------------------------------

  /** A new segment: the collector's stream when one is configured and answers, else a file. */
  private void openSink() {
    if (!cfg.collector.isEmpty() && reconnects == 0 && nextReconnectNs == 0) {
      Stream st = openStream();
      if (st != null) {
        stream = st;
        return;
      }
      return; // openStream fell back to a file
    }
    openSegment();
  }

  /** Connects to the collector; on failure falls back to a file (first time) and returns null. */
  private Stream openStream() {
    segment++;
    Map<String, Object> hello = new LinkedHashMap<>();
    hello.put("op", "hello");
    hello.put("versions", List.of(1L));
    hello.put("token", cfg.token);
    hello.put("format", List.of((long) Wtrace.MAJOR, (long) Wtrace.MINOR));
    hello.put("process_id", processId);
    hello.put("service", Recorder.cut(cfg.service, 256));
    hello.put("pid", pid);
    hello.put("runtime", "java");
    hello.put("segment", (long) segment);
    try {
      Stream st = Stream.open(cfg.collector, hello, agentThreads);
      reconnects = 0;
      nextReconnectNs = 0;
      retries = 0;
      collectorFile = st.file;
      segmentBytes = 16;
      return st;
    } catch (Throwable e) {
      segment--;
      if (outFile == null) {
        fallBack(Stream.why(e), List.of(), false);
      } else {
        retries++;
        scheduleReconnect(); // still on the file; try again later
      }
      return null;
    }
  }

  private boolean reconnectDue(long t) {
    return !framer.stopping() && !cfg.collector.isEmpty() && nextReconnectNs != 0 && t >= nextReconnectNs;
  }

  private void scheduleReconnect() {
    reconnects = Math.min(reconnects + 1, 5); // 5 and on: RETRY_MAX
    nextReconnectNs = Recorder.now() + retryDelayNs(reconnects);
  }

  /** The delay before the next attempt after {@code failed} failed ones: 1, 2, 4, 8, 16, 30, 30 ... s, capped. */
  private long retryDelayNs(int failed) {
    long d = failed < 5 ? (1L << failed) * 1_000_000_000L : Config.RETRY_MAX_NS;
    return Math.min(d, cfg.streamRetryNs);
  }

  private void closeSink() throws IOException {
    if (stream != null) {
      Stream st = stream;
      stream = null;
      String left = st.close();
      if (left != null) fallBack(left, st.takeUnacked(), st.saidBye());
      if (outFile != null) {
        outFile.close();
        outFile = null;
      }
    } else if (outFile != null) {
      outFile.close();
      outFile = null;
    }
  }

  private void send(byte[] chunk) {
    segmentBytes += chunk.length;
    String why = stream.send(chunk);
    if (why == null) return;
    Stream st = stream;
    stream = null;
    fallBack(why, st.takeUnacked(), st.saidBye());
  }

  /**
   * The collector is gone (or never answered): the segment file this process would have
   * written, starting with the process record and a fault saying why (none when the
   * collector said bye: an orderly shutdown loses nothing), then every chunk the collector
   * did not acknowledge, in order; later chunks follow. Reconnects are scheduled.
   */
  private void fallBack(String why, List<byte[]> unacked, boolean orderly) {
    try {
      if (outFile == null) openSegment();
      if (broken) return;
      byte[] first = framer.fallbackChunk(orderly ? null : why);
      writeUnacked(first);
      for (byte[] c : unacked) writeUnacked(c);
      if (!cfg.collector.isEmpty() && !framer.stopping()) {
        if (nextReconnectNs == 0 && reconnects == 0) {
          nextReconnectNs = Recorder.now() + retryDelayNs(0);
        } else {
          scheduleReconnect();
        }
      }
    } catch (Throwable e) {
      broken = true;
      framer.countFault();
    }
  }

  /**
   * A chunk already encoded (the collector did not acknowledge it) to the fallback file:
   * whole or not at all; a refusal is a fault and its events are counted lost.
   */
  private void writeUnacked(byte[] chunk) {
    try {
      writeWhole(chunk);
      writeError = null;
    } catch (IOException e) {
      lostOnWrite += Wtrace.eventCount(chunk);
      processDue = true;
      noteRefusal(e);
      if (dropReserve()) writeNews();
    }
  }

  private void openSegment() {
    segment++;
    String safe = cfg.service.replaceAll("[^A-Za-z0-9_.-]", "_");
    if (safe.length() > 40) safe = safe.substring(0, 40);
    if (safe.isEmpty()) safe = "java";
    String name = safe + "-" + pid + "-" + processId.substring(0, 8) + "-" + segment + ".wtrace";
    try {
      Path dir = Paths.get(cfg.out);
      Files.createDirectories(dir);
      if (!reserveTried) makeReserve(dir);
      Path path = dir.resolve(name);
      RandomAccessFile f = new RandomAccessFile(path.toFile(), "rw");
      try {
        f.setLength(0);
        f.write(Wtrace.fileHeader());
      } catch (IOException e) {
        // no room even for the header: the reserve's room is the segment's, if any
        f.setLength(0);
        if (!dropReserve()) {
          f.close();
          Files.deleteIfExists(path);
          if (refusal == null) refusal = e.getMessage() == null ? e.getClass().getName() : e.getMessage();
          outPath = path;
          throw e;
        }
        f.seek(0);
        f.write(Wtrace.fileHeader());
      }
      outFile = f;
      outPath = path;
      segmentBytes = 16;
    } catch (Throwable e) {
      broken = true;
      framer.countFault();
    }
  }
}
