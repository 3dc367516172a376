package dev.willowisp.agent;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;

/**
 * One native-stream connection (docs/protocols.md, "Native stream"): with {@code
 * WILLOWISP_COLLECTOR} set, the flusher sends its chunks to {@code willowisp collect
 * --native} instead of writing a segment file.
 *
 * <p>A {@code WSTR} hello (token from {@code WILLOWISP_TOKEN}), then every chunk exactly as
 * it would be written to a file. A reader thread ({@code willowisp-stream}) takes the
 * collector's cumulative acks and its bye or error. Chunks stay here until acknowledged (at
 * most 32 MiB / 4096; past that the flusher waits up to 5 s for acks). Connect 1 s, hello 2
 * s, a send 5 s; any failure, or the collector ending the connection, makes {@link #send}
 * return why, and the sink falls back to its file with the unacknowledged chunks
 * ({@link #takeUnacked}). The channel is non-blocking, with one selector per direction, so
 * that every wait has a deadline.
 */
final class Stream {
  static final int MAX_MESSAGE = 65536;
  static final long MAX_UNACKED_BYTES = 32L << 20;
  static final int MAX_UNACKED_CHUNKS = 4096;

  final String address;
  private final SocketChannel ch;
  private final Selector writeSel;
  private final Selector readSel;
  private final AtomicLong acked = new AtomicLong();
  private volatile boolean ended;
  private volatile String reason = "";
  /** The collector said bye: an orderly shutdown, nothing lost (unacked chunks go to the file). */
  private volatile boolean bye;
  private long sent;
  private final ArrayDeque<byte[]> unacked = new ArrayDeque<>();
  private long unackedBytes;
  /** The file name the collector writes this connection into. */
  String file = "";

  private Stream(String address, SocketChannel ch) throws IOException {
    this.address = address;
    this.ch = ch;
    this.writeSel = Selector.open();
    this.readSel = Selector.open();
    ch.register(writeSel, SelectionKey.OP_WRITE);
    ch.register(readSel, SelectionKey.OP_READ);
  }

  /** Connects and says hello. IOException's message says why not (the caller falls back). */
  static Stream open(String address, Map<String, Object> hello, Set<Thread> agentThreads) throws IOException {
    SocketChannel ch;
    try {
      ch = connect(address);
    } catch (IOException | RuntimeException e) {
      throw new IOException("cannot reach collector " + address + ": " + why(e));
    }
    Stream s = null;
    try {
      s = new Stream(address, ch);
      s.write(frame(hello), 5000);
      Map<?, ?> reply = s.readMessage(System.nanoTime() + 2_000_000_000L);
      if (!Boolean.TRUE.equals(reply.get("ok"))) {
        Object err = reply.get("error");
        Object code = err instanceof Map ? ((Map<?, ?>) err).get("code") : "?";
        throw new IOException("collector " + address + " refused the hello: " + Recorder.cut(String.valueOf(code), 64));
      }
      s.file = String.valueOf(reply.get("file"));
    } catch (IOException | RuntimeException e) {
      if (s != null) {
        s.shut(); // the channel and both selectors
      } else {
        try {
          ch.close();
        } catch (IOException ignored) {
          // already failing
        }
      }
      String m = e.getMessage();
      throw new IOException(m != null && m.startsWith("collector ") ? m : "collector " + address + " did not answer the hello: " + why(e));
    }
    Thread t = new Thread(s::readAcks, "willowisp-stream");
    t.setDaemon(true);
    agentThreads.add(t);
    t.start();
    return s;
  }

  static String why(Throwable e) {
    String m = e.getMessage();
    return m == null || m.isEmpty() ? e.getClass().getSimpleName() : m;
  }

  private static SocketChannel connect(String address) throws IOException {
    if (address.startsWith("unix:")) {
      SocketChannel c = SocketChannel.open(StandardProtocolFamily.UNIX);
      c.connect(UnixDomainSocketAddress.of(address.substring(5)));
      c.configureBlocking(false);
      return c;
    }
    String hp = address.startsWith("tcp://") ? address.substring(6) : address;
    int colon = hp.lastIndexOf(':');
    if (colon <= 0) throw new IOException("not host:port");
    String host = hp.substring(0, colon);
    if (host.startsWith("[") && host.endsWith("]")) host = host.substring(1, host.length() - 1);
    int port = Integer.parseInt(hp.substring(colon + 1));
    SocketChannel c = SocketChannel.open();
    try {
      c.configureBlocking(false);
      c.setOption(java.net.StandardSocketOptions.TCP_NODELAY, true);
      if (!c.connect(new InetSocketAddress(host, port))) {
        try (Selector s = Selector.open()) {
          c.register(s, SelectionKey.OP_CONNECT);
          if (s.select(1000) == 0) throw new IOException("connect timed out (1 s)");
          c.finishConnect();
        }
      }
      return c;
    } catch (IOException | RuntimeException e) {
      c.close();
      throw e;
    }
  }

  static byte[] frame(Map<String, Object> obj) {
    byte[] body = Json.write(obj).getBytes(StandardCharsets.UTF_8);
    ByteBuffer b = ByteBuffer.allocate(8 + body.length).order(ByteOrder.LITTLE_ENDIAN);
    b.put(new byte[] {'W', 'S', 'T', 'R'}).putInt(body.length).put(body);
    return b.array();
  }

  private void write(byte[] data, long timeoutMs) throws IOException {
    ByteBuffer b = ByteBuffer.wrap(data);
    long deadline = System.nanoTime() + timeoutMs * 1_000_000L;
    while (b.hasRemaining()) {
      if (ch.write(b) == 0) {
        long left = (deadline - System.nanoTime()) / 1_000_000L;
        if (left <= 0) throw new IOException("send timed out (5 s)");
        writeSel.select(left);
        writeSel.selectedKeys().clear();
      }
    }
  }

  private void readFully(ByteBuffer b, long deadline) throws IOException {
    while (b.hasRemaining()) {
      int n = ch.read(b);
      if (n < 0) throw new IOException("connection closed");
      if (n == 0) {
        long left = deadline == Long.MAX_VALUE ? 0 : (deadline - System.nanoTime()) / 1_000_000L;
        if (deadline != Long.MAX_VALUE && left <= 0) throw new IOException("no answer in time");
        readSel.select(left);
        readSel.selectedKeys().clear();
        if (!ch.isOpen()) throw new IOException("connection closed");
      }
    }
  }

  private Map<?, ?> readMessage(long deadline) throws IOException {
    ByteBuffer head = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
    readFully(head, deadline);
    if (head.get(0) != 'W' || head.get(1) != 'S' || head.get(2) != 'T' || head.get(3) != 'R') {
      throw new IOException("the collector sent something that is not a WSTR frame");
    }
    long n = Integer.toUnsignedLong(head.getInt(4));
    if (n > MAX_MESSAGE) throw new IOException("the collector sent a message over 64 KiB");
    ByteBuffer body = ByteBuffer.allocate((int) n);
    readFully(body, deadline);
    try {
      Object v = Json.parse(body.array());
      if (v instanceof Map) return (Map<?, ?>) v;
    } catch (Json.BadJson e) {
      // below
    }
    throw new IOException("the collector sent a message that is not a JSON object");
  }

  private void readAcks() {
    try {
      while (true) {
        Map<?, ?> m = readMessage(Long.MAX_VALUE);
        Object c = m.get("chunks");
        if (c instanceof Long) acked.accumulateAndGet((Long) c, Math::max);
        Object op = m.get("op");
        if ("ack".equals(op)) continue;
        if ("bye".equals(op)) {
          reason = "collector is shutting down";
          bye = true;
        } else {
          Object err = m.get("error");
          Object code = err instanceof Map ? ((Map<?, ?>) err).get("code") : "unexpected message";
          reason = Recorder.cut(String.valueOf(code), 64);
        }
        break;
      }
    } catch (Throwable e) {
      reason = why(e);
    }
    ended = true;
  }

  private void prune() {
    long a = acked.get();
    while (!unacked.isEmpty() && sent - unacked.size() < a) unackedBytes -= unacked.pollFirst().length;
  }

  private String endedReason() {
    if (!ended) return null;
    return "collector " + address + " went away: " + (reason.isEmpty() ? "connection closed" : reason);
  }

  /** Sends one chunk; returns null, or why the stream is over (the chunk is kept unacked). */
  String send(byte[] chunk) {
    prune();
    long deadline = System.nanoTime() + 5_000_000_000L;
    while (unacked.size() >= MAX_UNACKED_CHUNKS || unackedBytes + chunk.length > MAX_UNACKED_BYTES) {
      String r = endedReason();
      if (r == null && System.nanoTime() > deadline) r = "collector " + address + " acknowledged nothing for 5 s";
      if (r != null) {
        push(chunk);
        return r;
      }
      java.util.concurrent.locks.LockSupport.parkNanos(5_000_000L);
      prune();
    }
    String r = endedReason();
    if (r != null) {
      push(chunk);
      return r;
    }
    try {
      write(chunk, 5000);
      push(chunk);
      return null;
    } catch (IOException | RuntimeException e) {
      push(chunk);
      return "collector " + address + ": " + why(e);
    }
  }

  private void push(byte[] chunk) {
    unacked.addLast(chunk);
    unackedBytes += chunk.length;
    sent++;
  }

  /** How many chunks the collector has not acknowledged yet (the flusher's). */
  int unacked() {
    prune();
    return unacked.size();
  }

  /** Every chunk not acknowledged yet, in order; closes the connection. */
  /** Did the collector end the stream in order (its bye)? */
  boolean saidBye() {
    return bye;
  }

  List<byte[]> takeUnacked() {
    prune();
    List<byte[]> out = new ArrayList<>(unacked);
    unacked.clear();
    unackedBytes = 0;
    shut();
    return out;
  }

  /** The clean end: bye, then up to 2 s for the collector's. Returns why chunks are left, or null. */
  String close() {
    try {
      write(frame(Map.of("op", "bye")), 2000);
    } catch (IOException | RuntimeException ignored) {
      // the wait below tells what is left
    }
    long deadline = System.nanoTime() + 2_000_000_000L;
    while (!ended && System.nanoTime() < deadline) java.util.concurrent.locks.LockSupport.parkNanos(5_000_000L);
    prune();
    if (unacked.isEmpty()) {
      shut();
      return null;
    }
    return "collector " + address + " did not acknowledge " + unacked.size() + " chunks before the end";
  }

  private void shut() {
    try {
      ch.close();
      readSel.wakeup();
      readSel.close();
      writeSel.close();
    } catch (IOException | RuntimeException ignored) {
      // going away
    }
  }
}
