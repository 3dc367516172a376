package dev.willowisp.agent;

import java.lang.reflect.Method;
import java.util.concurrent.CompletableFuture;
import java.util.function.BiConsumer;
import java.util.function.BiPredicate;

/**
 * HTTP hops for the JDK's own client and server, as the Python agent records them
 * (src/willowisp/agent/http.py): one {@code rpc} resource per request with {@code trace_id},
 * {@code span_id}, {@code parent_span_id} (server), {@code protocol=http}, {@code library},
 * {@code method}, {@code target} (path, query values elided) and {@code peer}.
 *
 * <p>Client ({@code java.net.http.HttpClient}): {@code sendAsync} gets a copy of the request
 * with a {@code traceparent} header (unless it has one), then {@code msg.send}; a blocking
 * {@code send} adds {@code unit.block(rpc)} and, on return, {@code rpc.response} (status, or
 * -1 on error); an asynchronous one writes {@code rpc.response} on the thread that completes
 * the future. Server ({@code com.sun.net.httpserver}): the outermost {@code Filter.Chain.doFilter}
 * extracts the context and writes {@code msg.recv}; {@code sendResponseHeaders} writes
 * {@code rpc.reply}. While a handler runs its context is the thread's, so calls it makes
 * continue the trace.
 *
 * <p>{@code java.net.http} and {@code jdk.httpserver} are defined to the platform class
 * loader, which this bootstrap class cannot see: the advice (inlined into those modules'
 * classes) reads the request and passes plain strings here, and rewrites the request itself.
 */
public final class HttpHooks {
  private static final ThreadLocal<Server> SERVER = new ThreadLocal<>();
  private static final ThreadLocal<long[]> CLIENT = new ThreadLocal<>(); // {rid, depth}

  /** The header filter for {@code HttpRequest.newBuilder(request, filter)}: keep them all. */
  public static final BiPredicate<String, String> ALL = (n, v) -> true;

  /** Allowlisted request headers, in the order the server advice passes their values. */
  public static final String[] HEADERS = {
    "content-type", "accept", "user-agent", "content-length", "traceparent", "tracestate"
  };

  private HttpHooks() {}

  static final class Server {
    final int rid;
    final TraceContext ctx;
    int depth;
    boolean replied;
    /** The boundary instance this request opened, or null. */
    Boundaries.Instance boundary;
    Ring ring;

    Server(int rid, TraceContext ctx) {
      this.rid = rid;
      this.ctx = ctx;
    }
  }

  /** The context for a new outgoing request made on this thread. */
  static TraceContext outgoing(Recorder rec) {
    Server s = SERVER.get();
    if (s != null) return s.ctx.child();
    TraceContext inherited = Agent.inherited;
    if (inherited != null) return inherited.child();
    return TraceContext.root(rec.cfg.traceRatio);
  }

  static TraceContext current() {
    Server s = SERVER.get();
    return s == null ? null : s.ctx;
  }

  /** A path with query values elided ({@code /a?x=1&y=2} -> {@code /a?x=&y=}). */
  static String target(String path, String query) {
    if (path == null || path.isEmpty()) path = "/";
    if (query == null) return path;
    StringBuilder b = new StringBuilder(path).append('?');
    String[] parts = query.split("&");
    for (int i = 0; i < parts.length; i++) {
      if (i > 0) b.append('&');
      int eq = parts[i].indexOf('=');
      b.append(eq >= 0 ? parts[i].substring(0, eq + 1) : parts[i]);
    }
    return b.toString();
  }

  // --- client -------------------------------------------------------------------------

  /** Entering the blocking {@code send}: the inner sendAsync is then a blocking call. */
  public static void clientSendEnter() {
    long[] c = CLIENT.get();
    if (c == null) CLIENT.set(c = new long[2]);
    c[1]++;
  }

  /** Leaving {@code send}: rpc.response with the status, or -1. */
  public static void clientSendExit(int status) {
    long[] c = CLIENT.get();
    if (c == null) return;
    c[1]--;
    int rid = (int) c[0];
    c[0] = 0;
    Recorder rec = Recorder.INSTANCE;
    if (rid == 0 || rec == null) return;
    try {
      Ring r = rec.ring();
      rec.emit(r, Kinds.RPC_RESPONSE, r.unitId, Recorder.now(), rid, status, 0);
    } catch (Throwable e) {
      rec.fault("HttpClient.send", e);
    }
  }

  /**
   * At {@code sendAsync}: records msg.send (and, inside send, the wait) and returns the
   * traceparent the advice must add to the request, or null to send it as it is.
   */
  public static String clientRequest(String existing, String method, String scheme, String host, int port, String path, String query) {
    Recorder rec = Recorder.INSTANCE;
    if (rec == null) return null;
    try {
      TraceContext ctx = TraceContext.parse(existing);
      String inject = null;
      if (ctx == null) {
        ctx = outgoing(rec);
        inject = ctx.header();
      }
      long[] c = CLIENT.get();
      boolean blocking = c != null && c[1] > 0;
      Ring r = rec.ring();
      if (!ctx.sampled && rec.cfg.mode.equals("hops") && r.boundary == null) return inject;
      if (r.agent) return inject;
      if (port < 0) port = "https".equalsIgnoreCase(scheme) ? 443 : 80;
      String target = target(path, query);
      int rid =
          rec.newResource(
              "rpc", method + " " + target,
              "trace_id", ctx.traceId,
              "span_id", ctx.spanId,
              "sampled", ctx.sampled ? 1L : 0L,
              "protocol", "http",
              "library", "java.net.http",
              "method", method,
              "target", target,
              "peer", host + ":" + port);
      int loc = Hooks.callerLocation(rec);
      long t = Recorder.now();
      rec.emit(r, Kinds.MSG_SEND, r.unitId, t, rid, 0, loc);
      if (blocking) {
        rec.emit(r, Kinds.UNIT_BLOCK, r.unitId, t, rid, Kinds.RPC, loc);
        c[0] = rid;
      } else {
        ASYNC_RID.set(rid);
      }
      return inject;
    } catch (Throwable e) {
      rec.fault("HttpClient.sendAsync", e);
      return null;
    }
  }

  /**
   * At {@code sendAsync}, inside a boundary instance: the request's tracestate with the
   * {@code wisp=b-<id>} member, so the next process continues the boundary; else null.
   */
  public static String clientTracestate(String existing) {
    Recorder rec = Recorder.INSTANCE;
    if (rec == null) return null;
    try {
      String member = Boundaries.member(rec.ring());
      return member == null ? null : Boundaries.withMember(existing, member);
    } catch (Throwable e) {
      rec.fault("HttpClient.tracestate", e);
      return null;
    }
  }

  private static final ThreadLocal<Integer> ASYNC_RID = new ThreadLocal<>();

  /** After {@code sendAsync} returned (not inside send): rpc.response when it completes. */
  public static void clientAsyncResult(Object future) {
    Integer rid = ASYNC_RID.get();
    if (rid == null) return;
    ASYNC_RID.remove();
    Recorder rec = Recorder.INSTANCE;
    if (rec == null || !(future instanceof CompletableFuture)) return;
    try {
      ((CompletableFuture<?>) future).whenComplete(new Completion(rec, rid));
    } catch (Throwable e) {
      rec.fault("HttpClient.sendAsync", e);
    }
  }

  /** rpc.response when an asynchronous exchange completes, on the completing thread. */
  static final class Completion implements BiConsumer<Object, Throwable> {
    private static volatile Method statusCode;
    private final Recorder rec;
    private final int rid;

    Completion(Recorder rec, int rid) {
      this.rec = rec;
      this.rid = rid;
    }

    @Override
    public void accept(Object resp, Throwable err) {
      try {
        int status = -1;
        if (err == null && resp != null) {
          Method m = statusCode;
          if (m == null) {
            Class<?> api = Class.forName("java.net.http.HttpResponse", false, ClassLoader.getPlatformClassLoader());
            statusCode = m = api.getMethod("statusCode");
          }
          status = (Integer) m.invoke(resp);
        }
        Ring r = rec.ring();
        rec.emit(r, Kinds.RPC_RESPONSE, r.unitId, Recorder.now(), rid, status, 0);
      } catch (Throwable e) {
        rec.fault("HttpClient.response", e);
      }
    }
  }

  // --- server -------------------------------------------------------------------------

  /** Entering a {@code Filter.Chain.doFilter}: true when this is the outermost one. */
  public static boolean serverDepth() {
    Server s = SERVER.get();
    if (s == null) return true;
    s.depth++;
    return false;
  }

  /**
   * The outermost {@code doFilter}: extracts the context and records msg.recv. headers: the
   * values of {@link #HEADERS} (null where absent).
   */
  public static void serverEnter(String method, String path, String query, String remoteHost, int remotePort, String[] headers) {
    Recorder rec = Recorder.INSTANCE;
    if (rec == null) return;
    try {
      TraceContext parent = TraceContext.parse(headers[4]);
      TraceContext own = parent != null ? parent.child() : TraceContext.root(rec.cfg.traceRatio);
      int rid = 0;
      Ring r = rec.ring();
      String target = target(path, query);
      Boundaries.Instance inst =
          r.agent ? null : Boundaries.enter(r, "http", method, target, Boundaries.memberOf(headers[5]));
      if ((own.sampled || !rec.cfg.mode.equals("hops") || inst != null) && !r.agent) {
        java.util.List<Object> attrs =
            new java.util.ArrayList<>(
                java.util.List.of(
                    "trace_id", own.traceId,
                    "span_id", own.spanId,
                    "parent_span_id", parent != null ? parent.spanId : "",
                    "sampled", own.sampled ? 1L : 0L,
                    "protocol", "http",
                    "library", "com.sun.net.httpserver",
                    "method", method,
                    "target", target,
                    "peer", remoteHost + ":" + remotePort,
                    "headers", headersJson(headers)));
        if (inst != null) {
          attrs.add("boundary");
          attrs.add(inst.declared.boundary.entry);
          if (!own.sampled) {
            attrs.add("caller_sampled");
            attrs.add(0L);
          }
        }
        rid = rec.newResource("rpc", method + " " + target, attrs.toArray());
        rec.emit(r, Kinds.MSG_RECV, r.unitId, Recorder.now(), rid, 0, 0);
      }
      Server s = new Server(rid, own);
      s.depth = 1;
      s.boundary = inst;
      s.ring = r;
      SERVER.set(s);
    } catch (Throwable e) {
      rec.fault("HttpServer.doFilter", e);
    }
  }

  /** Leaving a {@code doFilter}; the outermost one ends the request's context. */
  public static void serverExit() {
    Server s = SERVER.get();
    if (s == null) return;
    if (--s.depth <= 0) {
      SERVER.remove();
      if (s.boundary != null) {
        try {
          Boundaries.leave(s.ring, s.boundary);
        } catch (Throwable e) {
          Recorder rec = Recorder.INSTANCE;
          if (rec != null) rec.fault("HttpServer.boundary", e);
        }
      }
    }
  }

  /** {@code sendResponseHeaders(code, length)}: rpc.reply. */
  public static void serverReply(int code) {
    Server s = SERVER.get();
    Recorder rec = Recorder.INSTANCE;
    if (s == null || s.rid == 0 || s.replied || rec == null) return;
    try {
      s.replied = true;
      Ring r = rec.ring();
      rec.emit(r, Kinds.RPC_REPLY, r.unitId, Recorder.now(), s.rid, code, Hooks.callerLocation(rec));
    } catch (Throwable e) {
      rec.fault("HttpServer.sendResponseHeaders", e);
    }
  }

  static String headersJson(String[] values) {
    StringBuilder b = new StringBuilder("{");
    for (int i = 0; i < HEADERS.length && i < values.length; i++) {
      if (values[i] == null) continue;
      if (b.length() > 1) b.append(", ");
      b.append(Json.quote(HEADERS[i])).append(": ").append(Json.quote(values[i]));
    }
    return b.append('}').toString();
  }
}
