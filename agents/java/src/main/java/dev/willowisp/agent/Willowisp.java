package dev.willowisp.agent;

/**
 * The agent's small public API, for code and frameworks the hooks do not cover. Every
 * method is a no-op when the agent is not running and never throws.
 *
 * <pre>{@code
 * Willowisp.access("api", "cart:42", Willowisp.WRITE);      // data.access, for races
 * String id = Willowisp.messageSend("kafka", "orders", msgId); // returns a traceparent to carry
 * Willowisp.messageReceive("kafka", "orders", msgId, traceparentOrNull);
 * }</pre>
 */
public final class Willowisp {
  public static final int READ = 0;
  public static final int WRITE = 1;

  private Willowisp() {}

  /** True when this JVM is being recorded. */
  public static boolean active() {
    return Recorder.INSTANCE != null;
  }

  /** The calling thread read ({@link #READ}) or wrote ({@link #WRITE}) the data {@code name}. */
  public static void access(String store, String name, int mode) {
    Recorder rec = Recorder.INSTANCE;
    if (rec == null || name == null) return;
    try {
      Ring r = rec.ring();
      if (r.agent) return;
      int res = rec.namedResource("data", name, "store", store == null ? "api" : store, "statement", "");
      rec.emit(r, Kinds.DATA_ACCESS, r.unitId, Recorder.now(), res, mode == WRITE ? 1 : 0, Hooks.callerLocation(rec));
    } catch (Throwable e) {
      rec.fault("Willowisp.access", e);
    }
  }

  /**
   * The calling thread sends a message with id {@code messageId} to {@code destination};
   * returns the traceparent to put in the message's headers ("" when not recording).
   */
  public static String messageSend(String protocol, String destination, String messageId) {
    Recorder rec = Recorder.INSTANCE;
    if (rec == null) return "";
    try {
      TraceContext ctx = HttpHooks.outgoing(rec);
      Ring r = rec.ring();
      int res =
          rec.newResource(
              "message", protocol + " " + destination,
              "protocol", protocol, "library", "willowisp-api", "destination", destination,
              "message_id", messageId == null ? "" : messageId,
              "trace_id", ctx.traceId, "span_id", ctx.spanId, "sampled", ctx.sampled ? 1L : 0L);
      rec.emit(r, Kinds.MSG_SEND, r.unitId, Recorder.now(), res, 0, Hooks.callerLocation(rec));
      return ctx.header();
    } catch (Throwable e) {
      rec.fault("Willowisp.messageSend", e);
      return "";
    }
  }

  /** The calling thread received message {@code messageId} (with the sender's traceparent, if any). */
  public static void messageReceive(String protocol, String destination, String messageId, String traceparent) {
    Recorder rec = Recorder.INSTANCE;
    if (rec == null) return;
    try {
      TraceContext parent = TraceContext.parse(traceparent);
      TraceContext own = parent != null ? parent.child() : TraceContext.root(rec.cfg.traceRatio);
      Ring r = rec.ring();
      int res =
          rec.newResource(
              "message", protocol + " " + destination,
              "protocol", protocol, "library", "willowisp-api", "destination", destination,
              "message_id", messageId == null ? "" : messageId,
              "trace_id", own.traceId, "span_id", own.spanId,
              "parent_span_id", parent == null ? "" : parent.spanId, "sampled", own.sampled ? 1L : 0L);
      rec.emit(r, Kinds.MSG_RECV, r.unitId, Recorder.now(), res, 0, Hooks.callerLocation(rec));
    } catch (Throwable e) {
      rec.fault("Willowisp.messageReceive", e);
    }
  }

  /** Writes what is buffered now (tests, before an expected crash). */
  public static void flush() {
    Recorder rec = Recorder.INSTANCE;
    if (rec != null) rec.flush();
  }
}
