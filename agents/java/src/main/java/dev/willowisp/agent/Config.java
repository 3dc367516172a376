package dev.willowisp.agent;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The agent's settings, read once from {@code WILLOWISP_*} (docs/agent-java.md). Bad values
 * fall back to defaults and are remembered as {@link #problems} (written as faults once the
 * recorder runs); reading the environment never throws.
 */
final class Config {
  /** Main classes and jars of tools that JAVA_TOOL_OPTIONS reaches but nobody wants traced. */
  static final String[] TOOL_PREFIXES = {
    "org.codehaus.plexus.classworlds", "org.apache.maven", "org.gradle", "sbt.", "xsbt.",
    "com.sun.tools.", "jdk.jfr.internal.tool", "jdk.internal.jshell", "jdk.jshell",
    "sun.tools.", "jdk.jcmd", "kotlin.", "org.jetbrains.kotlin", "JfrExport", "coursier"
  };

  String out = "";
  String mode = "full";
  double traceRatio = 1.0;
  String service = "java";
  long clockOffsetNs;
  String traceparent = "";
  boolean disabled;
  List<String> include = new ArrayList<>();
  String boundaries = "";
  /** WILLOWISP_COLLECTOR: stream chunks to a collector (host:port, tcp://, [v6]:port, unix:/path). */
  String collector = "";
  String token = "";
  /**
   * WILLOWISP_STREAM_RETRY_S: the longest delay between reconnects to the collector, in ns
   * (default and at most {@link #RETRY_MAX_NS}, 30 s; positive seconds, fractions allowed).
   */
  long streamRetryNs = RETRY_MAX_NS;
  String parentProcess = "";
  long runPid;
  int flushMs = 50;
  int sampleMs = 100;
  int jfrThresholdMs = 10;
  boolean jfr = true;
  /** JFR event groups not to enable: park, enter, wait, safepoint (comma-separated). */
  String jfrSkip = "";
  boolean hooks = true;
  boolean allStacks;
  /** Class-name prefixes whose synchronized blocks and methods are instrumented. */
  List<String> syncClasses = new ArrayList<>();
  int ringEvents = 8192;
  /**
   * WILLOWISP_JAVA_CODEC: {@code auto} (default: deflate a chunk unless the event rate is
   * above {@link Recorder#AUTO_DEFLATE_EVENTS_PER_S}), {@code deflate} or {@code none}.
   */
  String codec = "auto";
  final List<String> problems = new ArrayList<>();

  /** RETRY_MAX: after 1, 2, 4, 8 and 16 s the agent tries the collector every 30 s. */
  static final long RETRY_MAX_NS = 30_000_000_000L;

  static Config fromEnv(Map<String, String> env, String command) {
    Config c = new Config();
    c.disabled = !env.getOrDefault("WILLOWISP_DISABLED", "").matches("|0");
    c.out = env.getOrDefault("WILLOWISP_OUT", "");
    String mode = env.getOrDefault("WILLOWISP_MODE", "full").trim().toLowerCase(Locale.ROOT);
    if (mode.equals("full") || mode.equals("hops")) {
      c.mode = mode;
    } else if (!mode.isEmpty()) {
      c.problems.add("WILLOWISP_MODE=" + mode + " is not full or hops; using full");
    }
    c.traceRatio = c.fraction(env, "WILLOWISP_TRACE_RATIO", 1.0);
    c.clockOffsetNs = c.integer(env, "WILLOWISP_CLOCK_OFFSET_NS", 0, Long.MIN_VALUE, Long.MAX_VALUE);
    c.flushMs = (int) c.integer(env, "WILLOWISP_FLUSH_MS", 50, 5, 100);
    c.sampleMs = (int) c.integer(env, "WILLOWISP_JAVA_SAMPLE_MS", 100, 10, 10_000);
    c.jfrThresholdMs = (int) c.integer(env, "WILLOWISP_JAVA_JFR_THRESHOLD_MS", 10, 0, 60_000);
    c.jfr = !env.getOrDefault("WILLOWISP_JAVA_JFR", "1").equals("0");
    c.hooks = !env.getOrDefault("WILLOWISP_JAVA_HOOKS", "1").equals("0");
    c.jfrSkip = env.getOrDefault("WILLOWISP_JAVA_JFR_SKIP", "");
    String codec = env.getOrDefault("WILLOWISP_JAVA_CODEC", "").trim().toLowerCase(Locale.ROOT);
    if (codec.equals("auto") || codec.equals("deflate") || codec.equals("none")) {
      c.codec = codec;
    } else if (!codec.isEmpty()) {
      c.problems.add("WILLOWISP_JAVA_CODEC=" + codec + " is not auto, deflate or none; using auto");
    }
    c.allStacks = env.getOrDefault("WILLOWISP_JAVA_STACKS", "").equals("all");
    c.traceparent = env.getOrDefault("TRACEPARENT", "").trim();
    c.boundaries = env.getOrDefault("WILLOWISP_BOUNDARIES", "");
    c.collector = env.getOrDefault("WILLOWISP_COLLECTOR", "").trim();
    c.token = env.getOrDefault("WILLOWISP_TOKEN", "");
    c.streamRetryNs = c.seconds(env, "WILLOWISP_STREAM_RETRY_S", RETRY_MAX_NS);
    c.parentProcess = env.getOrDefault("WILLOWISP_PARENT_PROCESS", "");
    c.runPid = c.integer(env, "WILLOWISP_RUN_PID", 0, 0, Long.MAX_VALUE);
    for (String part : env.getOrDefault("WILLOWISP_JAVA_INCLUDE", "").split(",")) {
      if (!part.isBlank()) c.include.add(part.trim());
    }
    for (String part : env.getOrDefault("WILLOWISP_JAVA_SYNC", "").split(",")) {
      String p = part.trim();
      if (p.endsWith("*")) p = p.substring(0, p.length() - 1);
      if (!p.isEmpty()) c.syncClasses.add(p);
    }
    String svc = env.getOrDefault("WILLOWISP_SERVICE", "");
    if (svc.isBlank()) svc = env.getOrDefault("OTEL_SERVICE_NAME", "");
    if (svc.isBlank()) svc = programName(command);
    c.service = svc.isBlank() ? "java" : svc.trim();
    return c;
  }

  /** True when the bytecode hooks record this class's monitor enters and exits themselves. */
  boolean syncHooked(String className) {
    if (className == null || !hooks) return false;
    for (String p : syncClasses) {
      if (className.startsWith(p)) return true;
    }
    return false;
  }

  /** True when this JVM should be recorded: enabled, an output folder, and wanted. */
  boolean wanted(String command) {
    if (disabled || out.isBlank()) return false;
    String main = mainOf(command);
    if (!include.isEmpty()) {
      for (String p : include) {
        if (!main.isEmpty() && (main.contains(p) || command.contains(p))) return true;
      }
      return false;
    }
    for (String p : TOOL_PREFIXES) {
      if (main.startsWith(p) || baseName(main).startsWith(p)) return false;
    }
    return true;
  }

  /**
   * The main class or jar: the first word of {@code sun.java.command}; for a source-file
   * program ({@code java Shop.java}, run by javac's launcher) the source file.
   */
  static String mainOf(String command) {
    String[] words = (command == null ? "" : command.trim()).split("\\s+");
    if (words.length > 1 && words[0].contains("com.sun.tools.javac.launcher.")) return words[1];
    return words[0];
  }

  static String programName(String command) {
    String main = baseName(mainOf(command));
    if (main.endsWith(".jar")) return main.substring(0, main.length() - 4);
    if (main.endsWith(".java")) return main.substring(0, main.length() - 5);
    int dot = main.lastIndexOf('.');
    return dot >= 0 ? main.substring(dot + 1) : main;
  }

  private static String baseName(String path) {
    int slash = path.lastIndexOf('/');
    return slash >= 0 ? path.substring(slash + 1) : path;
  }

  private double fraction(Map<String, String> env, String name, double dflt) {
    String v = env.getOrDefault(name, "").trim();
    if (v.isEmpty()) return dflt;
    try {
      double d = Double.parseDouble(v);
      if (d >= 0 && d <= 1) return d;
    } catch (NumberFormatException e) {
      // fall through
    }
    problems.add(name + "=" + v + " is not a number in [0, 1]; using " + dflt);
    return dflt;
  }

  /** A positive number of seconds (fractions allowed) as ns, at most {@code dfltNs}. */
  private long seconds(Map<String, String> env, String name, long dfltNs) {
    String v = env.getOrDefault(name, "").trim();
    if (v.isEmpty()) return dfltNs;
    try {
      double d = Double.parseDouble(v);
      if (d > 0 && Double.isFinite(d)) return Math.max(1L, Math.min(dfltNs, Math.round(d * 1e9)));
    } catch (NumberFormatException e) {
      // fall through
    }
    problems.add(name + "=" + v + " is not a positive number of seconds; using " + dfltNs / 1e9);
    return dfltNs;
  }

  private long integer(Map<String, String> env, String name, long dflt, long lo, long hi) {
    String v = env.getOrDefault(name, "").trim();
    if (v.isEmpty()) return dflt;
    try {
      long x = Long.parseLong(v);
      if (x >= lo && x <= hi) return x;
    } catch (NumberFormatException e) {
      // fall through
    }
    problems.add(name + "=" + v + " is not an integer in [" + lo + ", " + hi + "]; using " + dflt);
    return dflt;
  }
}
