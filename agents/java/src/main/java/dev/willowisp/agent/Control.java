package dev.willowisp.agent;

import java.io.IOException;
import java.math.BigInteger;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.DirectoryStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The control channel, agent side (docs/protocols.md): {@code willowisp ctl} asks this JVM
 * for its status and switches boundaries on and off.
 *
 * <p>At start the agent listens on a Unix socket ({@code <pid>-<p8>.sock}, mode 0600, in the
 * 0700 per-user folder {@code $WILLOWISP_RUNTIME_DIR} or {@code /tmp/willowisp-<uid>}) and,
 * with {@code WILLOWISP_CONTROL=tcp}, on 127.0.0.1 too; {@code off} disables it. A
 * descriptor {@code <pid>-<p8>.json} (mode 0600, written atomically) beside the socket names
 * both and holds the per-session token ({@code WILLOWISP_CONTROL_TOKEN}, 32 hex digits, fixes
 * it for tests). Frames are {@code WCTL}, a u32 LE length and one JSON object; a hello with
 * the token (compared in constant time) comes first, then {@code ping}, {@code status},
 * {@code enable}, {@code disable}.
 *
 * <p>Trade-offs: one daemon thread accepts (a selector over both listeners) and one daemon
 * thread per connection serves it with plain reads bounded by deadlines (a per-connection
 * selector: Unix channels have no socket timeouts); at most {@link #MAX_CONNECTIONS} at once,
 * the rest are told {@code busy} by the accepting thread without reading anything. The
 * threads are named {@code willowisp-*}, so the agent never records them. Malformed input is
 * counted and answered and ends at most its own connection; anything unexpected is an agent
 * fault; nothing here reaches the program.
 */
final class Control {
  static final int MAX_BODY = 1 << 20;
  static final int MAX_ARG_BYTES = 4096;
  static final int MAX_CONNECTIONS = 4;
  static final long HELLO_MS = 5000;
  static final long IDLE_MS = 30_000;
  static final long LINGER_MS = 1000;
  static final long WRITE_MS = 5000;
  static final int MAX_UNIX_PATH = 107;
  static final long MAX_SAFE_INT = (1L << 53) - 1;
  static final List<String> OPS = List.of("ping", "status", "enable", "disable");
  /** Error codes that end the connection even after a hello. */
  static final Set<String> CLOSING =
      Set.of("bad-frame", "frame-too-large", "timeout", "busy", "unauthorized", "unsupported-version", "hello-required");

  static volatile Control active;

  private final Recorder rec;
  private final String token;
  private final boolean wantTcp;
  String socketPath = "";
  String tcpAddress = "";
  private Path descriptor;
  private ServerSocketChannel unixListener;
  private ServerSocketChannel tcpListener;
  private Selector acceptor;
  private volatile boolean closing;
  /** Connections being served; Invariant: size <= MAX_CONNECTIONS. */
  private final Set<SocketChannel> conns = ConcurrentHashMap.newKeySet();

  final AtomicLong connections = new AtomicLong();
  final AtomicLong requests = new AtomicLong();
  final AtomicLong malformed = new AtomicLong();
  final AtomicLong unauthorized = new AtomicLong();
  final AtomicLong busy = new AtomicLong();
  final AtomicLong internalErrors = new AtomicLong();

  /** A protocol error: the code the peer is told. */
  static final class Refused extends Exception {
    final String code;

    Refused(String code, String message) {
      super(message, null, false, false);
      this.code = code;
    }
  }

  private Control(Recorder rec, String token, boolean tcp) {
    this.rec = rec;
    this.token = token;
    this.wantTcp = tcp;
  }

  // --- life cycle ---------------------------------------------------------------------

  /** At agent start (WILLOWISP_CONTROL: unix, tcp or off). Never throws. */
  static void start(Recorder rec) {
    try {
      String mode = System.getenv().getOrDefault("WILLOWISP_CONTROL", "unix").trim().toLowerCase(java.util.Locale.ROOT);
      if (mode.equals("off") || mode.equals("0") || mode.equals("no") || mode.equals("none")) return;
      if (!mode.equals("unix") && !mode.equals("tcp") && !mode.isEmpty()) {
        rec.fault("control", "WILLOWISP_CONTROL=" + Recorder.cut(mode, 64) + ": use unix, tcp or off");
        mode = "unix";
      }
      String tok = System.getenv().getOrDefault("WILLOWISP_CONTROL_TOKEN", "").trim().toLowerCase(java.util.Locale.ROOT);
      if (!tok.matches("[0-9a-f]{32}")) tok = Recorder.randomHex(16);
      Control c = new Control(rec, tok, mode.equals("tcp"));
      c.open();
      active = c;
    } catch (Throwable e) {
      rec.fault("control", e);
    }
  }

  private void open() throws IOException {
    Path dir = runtimeDir();
    checkPrivateDir(dir);
    sweepStale(dir);
    String stem = rec.pid + "-" + rec.processId.substring(0, 8);
    Path sock = dir.resolve(stem + ".sock");
    try {
      if (sock.toString().getBytes(StandardCharsets.UTF_8).length <= MAX_UNIX_PATH) {
        Files.deleteIfExists(sock);
        ServerSocketChannel u = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        unixListener = u;
        u.bind(UnixDomainSocketAddress.of(sock), 16);
        Files.setPosixFilePermissions(sock, PosixFilePermissions.fromString("rw-------"));
        socketPath = sock.toString();
      } else {
        rec.fault("control", "socket path " + sock + " is over " + MAX_UNIX_PATH + " bytes");
      }
      if (wantTcp) {
        ServerSocketChannel t = ServerSocketChannel.open(StandardProtocolFamily.INET);
        tcpListener = t;
        t.bind(new InetSocketAddress(InetAddress.getByName("127.0.0.1"), 0), 16);
        tcpAddress = "127.0.0.1:" + ((InetSocketAddress) t.getLocalAddress()).getPort();
      }
      if (unixListener == null && tcpListener == null) return;
      acceptor = Selector.open();
      for (ServerSocketChannel l : new ServerSocketChannel[] {unixListener, tcpListener}) {
        if (l == null) continue;
        l.configureBlocking(false);
        l.register(acceptor, SelectionKey.OP_ACCEPT);
      }
      descriptor = dir.resolve(stem + ".json");
      writeDescriptor(dir, stem);
    } catch (IOException | RuntimeException e) {
      closeListeners();
      throw e;
    }
    Thread t = new Thread(this::acceptLoop, "willowisp-control");
    t.setDaemon(true);
    rec.agentThreads.add(t);
    t.start();
  }

  private void writeDescriptor(Path dir, String stem) throws IOException {
    Map<String, Object> d = new LinkedHashMap<>();
    d.put("protocol", "willowisp-control");
    d.put("versions", List.of(1L));
    d.putAll(agentInfo());
    d.put("socket", socketPath);
    d.put("tcp", tcpAddress);
    d.put("token", token);
    String run;
    try {
      run = Paths.get(rec.cfg.out).toRealPath().toString();
    } catch (IOException e) {
      run = Paths.get(rec.cfg.out).toAbsolutePath().normalize().toString();
    }
    d.put("run", run);
    Path tmp = dir.resolve("." + stem + ".json.tmp");
    Files.deleteIfExists(tmp);
    Files.createFile(tmp, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
    Files.write(tmp, Json.write(d).getBytes(StandardCharsets.UTF_8));
    try {
      Files.move(tmp, descriptor, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    } catch (AtomicMoveNotSupportedException e) {
      Files.move(tmp, descriptor, StandardCopyOption.REPLACE_EXISTING);
    }
  }

  Map<String, Object> agentInfo() {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("pid", rec.pid);
    m.put("process_id", rec.processId);
    m.put("service", rec.cfg.service);
    m.put("runtime", "java");
    m.put("agent_version", Recorder.AGENT_VERSION);
    return m;
  }

  /** At exit: stop listening, end connections, remove the socket and the descriptor. */
  void stop() {
    closing = true;
    try {
      closeListeners();
    } catch (Throwable e) {
      internalErrors.incrementAndGet();
      rec.fault("control stop", e);
    }
    for (SocketChannel c : conns) {
      try {
        c.close();
      } catch (IOException ignored) {
        // going away anyway
      }
    }
    try {
      if (!socketPath.isEmpty()) Files.deleteIfExists(Paths.get(socketPath));
      if (descriptor != null) Files.deleteIfExists(descriptor);
    } catch (IOException ignored) {
      // a stale file is swept by the next agent or by ctl
    }
  }

  private void closeListeners() {
    for (java.io.Closeable c : new java.io.Closeable[] {acceptor, unixListener, tcpListener}) {
      try {
        if (c != null) c.close();
      } catch (IOException ignored) {
        // best effort
      }
    }
  }

  // --- the runtime folder -------------------------------------------------------------

  static long ownUid() throws IOException {
    return ((Number) Files.getAttribute(Paths.get("/proc/self"), "unix:uid")).longValue();
  }

  static Path runtimeDir() throws IOException {
    String d = System.getenv().getOrDefault("WILLOWISP_RUNTIME_DIR", "");
    if (!d.isBlank()) return Paths.get(d).toAbsolutePath();
    return Paths.get("/tmp/willowisp-" + ownUid());
  }

  /** Creates the folder 0700 if missing, then insists: a directory, ours, private. */
  static void checkPrivateDir(Path dir) throws IOException {
    try {
      Files.createDirectory(dir, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
    } catch (FileAlreadyExistsException e) {
      // checked below
    }
    Map<String, Object> a = Files.readAttributes(dir, "unix:uid,mode,isDirectory,isSymbolicLink", LinkOption.NOFOLLOW_LINKS);
    boolean dirOk = Boolean.TRUE.equals(a.get("isDirectory")) && !Boolean.TRUE.equals(a.get("isSymbolicLink"));
    long uid = ((Number) a.get("uid")).longValue();
    int mode = ((Number) a.get("mode")).intValue();
    if (!dirOk || uid != ownUid() || (mode & 077) != 0) {
      throw new IOException(
          "runtime folder " + dir + " is not a private directory of this user (uid " + uid + ", mode "
              + Integer.toOctalString(mode & 07777) + ")");
    }
  }

  /** Removes descriptors and sockets of processes that no longer exist (at most 256). */
  static void sweepStale(Path dir) {
    int seen = 0;
    try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir)) {
      for (Path p : ds) {
        if (++seen > 512) break;
        String name = p.getFileName().toString();
        int dash = name.indexOf('-');
        if (dash <= 0 || !(name.endsWith(".json") || name.endsWith(".sock"))) continue;
        long pid;
        try {
          pid = Long.parseLong(name.substring(0, dash));
        } catch (NumberFormatException e) {
          continue;
        }
        if (ProcessHandle.of(pid).isEmpty()) Files.deleteIfExists(p);
      }
    } catch (IOException | RuntimeException ignored) {
      // sweeping is a courtesy
    }
  }

  // --- accepting ----------------------------------------------------------------------

  private void acceptLoop() {
    try {
      while (!closing) {
        acceptor.select();
        for (SelectionKey k : acceptor.selectedKeys()) {
          if (!k.isValid() || !k.isAcceptable()) continue;
          SocketChannel c = ((ServerSocketChannel) k.channel()).accept();
          if (c != null) admit(c);
        }
        acceptor.selectedKeys().clear();
      }
    } catch (Throwable e) {
      if (!closing) {
        internalErrors.incrementAndGet();
        rec.fault("control accept", e);
      }
    }
  }

  private void admit(SocketChannel c) {
    connections.incrementAndGet();
    boolean tooMany;
    synchronized (conns) {
      tooMany = conns.size() >= MAX_CONNECTIONS;
      if (!tooMany) conns.add(c);
    }
    if (tooMany) {
      busy.incrementAndGet();
      try {
        c.configureBlocking(false);
        c.write(ByteBuffer.wrap(frame(error("busy", "too many control connections", null))));
        c.shutdownOutput();
        c.read(ByteBuffer.allocate(65536)); // what already arrived, so closing sends no reset
      } catch (IOException ignored) {
        // the peer is gone
      } finally {
        closeQuietly(c);
      }
      return;
    }
    try {
      Thread t = new Thread(() -> serve(c), "willowisp-control-conn");
      t.setDaemon(true);
      rec.agentThreads.add(t);
      t.start();
    } catch (Throwable e) {
      conns.remove(c);
      closeQuietly(c);
      internalErrors.incrementAndGet();
      rec.fault("control thread", e);
    }
  }

  // --- one connection -----------------------------------------------------------------

  /** A connection's socket with deadline-bounded reads and writes. */
  private static final class Peer implements AutoCloseable {
    final SocketChannel ch;
    final Selector sel;
    final SelectionKey key;

    Peer(SocketChannel ch) throws IOException {
      this.ch = ch;
      ch.configureBlocking(false);
      this.sel = Selector.open();
      this.key = ch.register(sel, SelectionKey.OP_READ);
    }

    /** Fills b; returns false on a clean end before any byte; Refused("truncated") after some. */
    boolean readFully(ByteBuffer b, long deadline) throws IOException, Refused {
      int start = b.position();
      while (b.hasRemaining()) {
        int n = ch.read(b);
        if (n < 0) {
          if (b.position() == start) return false;
          throw new Refused("truncated", "connection closed inside a frame");
        }
        if (n == 0) {
          long left = (deadline - System.nanoTime()) / 1_000_000L;
          if (left <= 0) throw new Refused("timeout", "no complete frame in time");
          key.interestOps(SelectionKey.OP_READ);
          sel.select(left);
          sel.selectedKeys().clear();
        }
      }
      return true;
    }

    void writeAll(byte[] data) throws IOException {
      ByteBuffer b = ByteBuffer.wrap(data);
      long deadline = System.nanoTime() + WRITE_MS * 1_000_000L;
      while (b.hasRemaining()) {
        if (ch.write(b) == 0) {
          long left = (deadline - System.nanoTime()) / 1_000_000L;
          if (left <= 0) throw new IOException("peer does not read");
          key.interestOps(SelectionKey.OP_WRITE);
          sel.select(left);
          sel.selectedKeys().clear();
        }
      }
      key.interestOps(SelectionKey.OP_READ);
    }

    /** Half-close, then drain what the peer still sends (1 s, 1 MiB), so it reads our reply. */
    void linger() {
      try {
        ch.shutdownOutput();
        ByteBuffer b = ByteBuffer.allocate(65536);
        long deadline = System.nanoTime() + LINGER_MS * 1_000_000L;
        long left = MAX_BODY;
        while (left > 0) {
          b.clear();
          int n = ch.read(b);
          if (n < 0) return;
          left -= n;
          if (n == 0) {
            long ms = (deadline - System.nanoTime()) / 1_000_000L;
            if (ms <= 0) return;
            key.interestOps(SelectionKey.OP_READ);
            sel.select(ms);
            sel.selectedKeys().clear();
          }
        }
      } catch (IOException ignored) {
        // gone
      }
    }

    @Override
    public void close() {
      try {
        sel.close();
      } catch (IOException ignored) {
        // nothing to do
      }
      closeQuietly(ch);
    }
  }

  private void serve(SocketChannel ch) {
    boolean linger = true;
    boolean hello = false;
    Peer p = null;
    try {
      p = new Peer(ch);
      if (ch.getRemoteAddress() instanceof UnixDomainSocketAddress && !peerIsUs(ch)) {
        unauthorized.incrementAndGet();
        p.writeAll(frame(error("unauthorized", "peer is another user", null)));
        return;
      }
      long deadline = System.nanoTime() + HELLO_MS * 1_000_000L;
      ByteBuffer head = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
      while (!closing) {
        byte[] body;
        try {
          head.clear();
          if (!p.readFully(head, deadline)) {
            linger = false;
            return; // a clean end
          }
          if (head.get(0) != 'W' || head.get(1) != 'C' || head.get(2) != 'T' || head.get(3) != 'L') {
            throw new Refused("bad-frame", "frame does not start with WCTL");
          }
          long len = Integer.toUnsignedLong(head.getInt(4));
          if (len > MAX_BODY) throw new Refused("frame-too-large", "frame of " + len + " bytes is over " + MAX_BODY);
          ByteBuffer b = ByteBuffer.allocate((int) len);
          if (len > 0 && !p.readFully(b, deadline)) throw new Refused("truncated", "closed before the body");
          body = b.array();
        } catch (Refused r) {
          malformed.incrementAndGet();
          if (r.code.equals("truncated")) {
            linger = false;
          } else {
            send(p, error(r.code, r.getMessage(), null));
          }
          return;
        }
        requests.incrementAndGet();
        Object[] out = handle(hello, body);
        @SuppressWarnings("unchecked")
        Map<String, Object> reply = (Map<String, Object>) out[0];
        if (Boolean.TRUE.equals(out[2])) hello = true;
        send(p, reply);
        if (Boolean.TRUE.equals(out[1])) return;
        deadline = System.nanoTime() + IDLE_MS * 1_000_000L;
      }
    } catch (IOException e) {
      linger = false; // the peer went away, or stop() closed us
    } catch (Throwable e) {
      internalErrors.incrementAndGet();
      rec.fault("control connection", e);
    } finally {
      conns.remove(ch);
      if (p != null) {
        if (linger && !closing) p.linger();
        p.close();
      } else {
        closeQuietly(ch);
      }
    }
  }

  private void send(Peer p, Map<String, Object> reply) throws IOException {
    byte[] f = frame(reply);
    if (f.length - 8 > MAX_BODY) {
      f = frame(error("internal", "reply of " + f.length + " bytes is over the " + MAX_BODY + "-byte limit", reply.get("id")));
    }
    p.writeAll(f);
  }

  /** One request: {reply, close after it, hello done}. */
  Object[] handle(boolean hello, byte[] body) {
    Object parsed;
    try {
      parsed = Json.parse(body);
    } catch (Json.BadJson e) {
      malformed.incrementAndGet();
      return new Object[] {error("bad-json", "body is not a UTF-8 JSON object: " + e.getMessage(), null), !hello, false};
    }
    if (!(parsed instanceof Map)) {
      malformed.incrementAndGet();
      return new Object[] {error("bad-request", "body is a JSON " + kindOf(parsed) + ", not an object", null), !hello, false};
    }
    @SuppressWarnings("unchecked")
    Map<String, Object> req = (Map<String, Object>) parsed;
    Object rid = req.get("id");
    boolean idOk =
        rid == null
            || (rid instanceof String && ((String) rid).length() <= 64)
            || (rid instanceof Long && Math.abs((Long) rid) <= MAX_SAFE_INT);
    Object op = req.get("op");
    if (!idOk || !(op instanceof String)) {
      malformed.incrementAndGet();
      String what = !idOk ? "id must be a string of at most 64 characters or an integer below 2^53" : "op must be a string";
      return new Object[] {error("bad-request", what, null), !hello, false};
    }
    if (!hello) {
      if (!op.equals("hello")) {
        malformed.incrementAndGet();
        return new Object[] {error("hello-required", "the first request must be hello", rid), true, false};
      }
      return hello(req, rid);
    }
    try {
      return new Object[] {ok(command((String) op, req), rid), false, false};
    } catch (Refused r) {
      malformed.incrementAndGet();
      return new Object[] {error(r.code, r.getMessage(), rid), CLOSING.contains(r.code), false};
    } catch (Boundaries.BadSpec e) {
      return new Object[] {error("bad-boundary", e.getMessage(), rid), false, false};
    } catch (Throwable e) {
      internalErrors.incrementAndGet();
      rec.fault("control " + op, e);
      return new Object[] {error("internal", e.getClass().getName() + ": " + e.getMessage(), rid), false, false};
    }
  }

  private Object[] hello(Map<String, Object> req, Object rid) {
    Object tok = req.get("token");
    boolean same =
        tok instanceof String
            && MessageDigest.isEqual(((String) tok).getBytes(StandardCharsets.UTF_8), token.getBytes(StandardCharsets.UTF_8));
    if (!same) {
      unauthorized.incrementAndGet();
      return new Object[] {error("unauthorized", "missing or wrong token", rid), true, false};
    }
    Object versions = req.get("versions");
    boolean listOk = versions instanceof List && !((List<?>) versions).isEmpty() && ((List<?>) versions).size() <= 16;
    if (listOk) {
      for (Object v : (List<?>) versions) listOk &= v instanceof Long || v instanceof BigInteger;
    }
    if (!listOk) {
      malformed.incrementAndGet();
      return new Object[] {error("bad-request", "versions must be a list of 1 to 16 integers", rid), true, false};
    }
    if (!((List<?>) versions).contains(1L)) {
      Map<String, Object> e = error("unsupported-version", "no common version: agent speaks [1]", rid);
      @SuppressWarnings("unchecked")
      Map<String, Object> err = (Map<String, Object>) e.get("error");
      err.put("versions", List.of(1L));
      return new Object[] {e, true, false};
    }
    Map<String, Object> result = new LinkedHashMap<>();
    result.put("version", 1L);
    result.put("agent", agentInfo());
    result.put("ops", OPS);
    return new Object[] {ok(result, rid), false, true};
  }

  private Map<String, Object> command(String op, Map<String, Object> req) throws Refused, Boundaries.BadSpec {
    switch (op) {
      case "ping":
        return new LinkedHashMap<>();
      case "status":
        {
          Map<String, Object> out = Boundaries.status(rec);
          Map<String, Object> c = new LinkedHashMap<>();
          c.put("connections", connections.get());
          c.put("requests", requests.get());
          c.put("malformed", malformed.get());
          c.put("unauthorized", unauthorized.get());
          c.put("busy", busy.get());
          c.put("internal_errors", internalErrors.get());
          c.put("socket", socketPath);
          c.put("tcp", tcpAddress);
          out.put("control", c);
          out.put("sink", rec.sinkStatus());
          return out;
        }
      case "enable":
      case "disable":
        {
          Object arg = req.get("boundary");
          if (!(arg instanceof String) || ((String) arg).isBlank()) {
            throw new Refused("bad-request", op + " needs a non-empty string 'boundary'");
          }
          if (((String) arg).getBytes(StandardCharsets.UTF_8).length > MAX_ARG_BYTES) {
            throw new Refused("bad-request", "boundary is over " + MAX_ARG_BYTES + " bytes");
          }
          Map<String, Object> out = new LinkedHashMap<>();
          boolean on = op.equals("enable");
          out.put("boundary", on ? Boundaries.enable(rec, (String) arg) : Boundaries.disable((String) arg));
          out.put("enabled", on);
          return out;
        }
      case "hello":
        throw new Refused("bad-request", "hello was already done on this connection");
      default:
        throw new Refused(
            "unknown-command", "unknown op " + Json.quote(Recorder.cut(op, 64)) + "; known: " + String.join(", ", OPS));
    }
  }

  // --- frames and replies ---------------------------------------------------------------

  static byte[] frame(Map<String, Object> obj) {
    byte[] body = Json.write(obj).getBytes(StandardCharsets.UTF_8);
    ByteBuffer b = ByteBuffer.allocate(8 + body.length).order(ByteOrder.LITTLE_ENDIAN);
    b.put(new byte[] {'W', 'C', 'T', 'L'}).putInt(body.length).put(body);
    return b.array();
  }

  static Map<String, Object> ok(Map<String, Object> result, Object rid) {
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("ok", true);
    m.put("result", result);
    if (rid != null) m.put("id", rid);
    return m;
  }

  static Map<String, Object> error(String code, String message, Object rid) {
    Map<String, Object> err = new LinkedHashMap<>();
    err.put("code", code);
    err.put("message", message == null ? "" : Recorder.cut(message, 500));
    Map<String, Object> m = new LinkedHashMap<>();
    m.put("ok", false);
    m.put("error", err);
    if (rid != null) m.put("id", rid);
    return m;
  }

  private static String kindOf(Object v) {
    if (v instanceof List) return "array";
    if (v instanceof String) return "string";
    if (v instanceof Boolean) return "boolean";
    if (v == null) return "null";
    return "number";
  }

  /** Is the peer of a Unix connection this user (or root)? Unknown: yes (folder and token protect). */
  private static boolean peerIsUs(SocketChannel ch) {
    try {
      jdk.net.UnixDomainPrincipal who = ch.getOption(jdk.net.ExtendedSocketOptions.SO_PEERCRED);
      String name = who.user().getName();
      String me = Files.getOwner(Paths.get("/proc/self")).getName();
      return name.equals(me) || name.equals("root") || name.equals("0");
    } catch (Throwable e) {
      return true;
    }
  }

  private static void closeQuietly(SocketChannel c) {
    try {
      c.close();
    } catch (IOException ignored) {
      // nothing to do
    }
  }
}
