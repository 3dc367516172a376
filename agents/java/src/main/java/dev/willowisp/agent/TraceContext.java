package dev.willowisp.agent;

import java.util.concurrent.ThreadLocalRandom;

/**
 * A W3C trace context ({@code traceparent: 00-<trace id>-<span id>-<flags>}). Sampling is
 * decided once at the root (a new trace: random below WILLOWISP_TRACE_RATIO) and then
 * carried in the flags to every process.
 */
final class TraceContext {
  final String traceId;
  final String spanId;
  final boolean sampled;

  TraceContext(String traceId, String spanId, boolean sampled) {
    this.traceId = traceId;
    this.spanId = spanId;
    this.sampled = sampled;
  }

  String header() {
    return "00-" + traceId + "-" + spanId + "-" + (sampled ? "01" : "00");
  }

  /** A child: same trace and decision, a new span id. */
  TraceContext child() {
    return new TraceContext(traceId, newSpanId(), sampled);
  }

  static TraceContext root(double ratio) {
    boolean sampled = ratio >= 1.0 || ThreadLocalRandom.current().nextDouble() < ratio;
    return new TraceContext(newTraceId(), newSpanId(), sampled);
  }

  /** Parses a traceparent header; null when absent or malformed. */
  static TraceContext parse(String h) {
    if (h == null) return null;
    String[] p = h.trim().split("-");
    if (p.length < 4 || p[0].length() != 2 || p[0].equals("ff")) return null;
    if (!hex(p[1], 32) || !hex(p[2], 16) || !hex(p[3], 2)) return null;
    if (p[1].matches("0+") || p[2].matches("0+")) return null;
    if (p[0].equals("00") && p.length != 4) return null;
    return new TraceContext(p[1], p[2], (Integer.parseInt(p[3], 16) & 1) == 1);
  }

  private static boolean hex(String s, int n) {
    if (s.length() != n) return false;
    for (int i = 0; i < n; i++) {
      char c = s.charAt(i);
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
  }

  static String newTraceId() {
    ThreadLocalRandom r = ThreadLocalRandom.current();
    return String.format("%016x%016x", r.nextLong(), r.nextLong() | 1);
  }

  static String newSpanId() {
    return String.format("%016x", ThreadLocalRandom.current().nextLong() | 1);
  }
}
