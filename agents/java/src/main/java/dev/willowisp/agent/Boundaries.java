package dev.willowisp.agent;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Pattern;

/**
 * Declared boundaries in this JVM: which work is recorded at full fidelity.
 *
 * <p>A boundary ({@code entry=http:POST /checkout;exit=http:reply;runtimes=java,python}, the
 * syntax of {@code willowisp/model/boundary.py}) comes from {@code WILLOWISP_BOUNDARIES} or
 * from {@code willowisp ctl PID enable SPEC}. An <em>instance</em> opens when the HTTP server
 * hook takes a request the entry matches, or one whose {@code tracestate} carries {@code
 * wisp=b-<id>} of a boundary this runtime belongs to, and closes when the outermost filter
 * returns. It lives on the handling thread's ring ({@link Ring#boundary}); requests made
 * inside carry the member on.
 *
 * <p>{@code hops} mode with boundaries turns the <em>gate</em> on: the lock and monitor hooks
 * record only on a thread inside an instance. {@code full} mode records everything;
 * boundaries there count their instances and cost. The cost of an instance is the events its
 * thread wrote between entry and exit times the measured cost per event.
 */
final class Boundaries {
  static final String RUNTIME = "java";
  static final String[] KEYS = {"entry", "exit", "runtimes"};
  static final List<String> RUNTIMES = List.of("python", "go", "java", "rust", "nodejs");

  /** A parsed SPEC: immutable. */
  static final class Boundary {
    final String spec;
    final String entry;
    final String exit;
    final List<String> runtimes;
    final String id;

    Boundary(String spec, String entry, String exit, List<String> runtimes) {
      this.spec = spec;
      this.entry = entry;
      this.exit = exit;
      this.runtimes = runtimes;
      this.id = sha256Prefix(entry);
    }

    boolean allows(String runtime) {
      return runtimes.isEmpty() || runtimes.contains(runtime);
    }

    /** Does an inbound hop start this boundary? */
    boolean matches(String protocol, String method, String target) {
      int colon = entry.indexOf(':');
      String wantProtocol = entry.substring(0, colon).trim().toLowerCase(Locale.ROOT);
      String what = entry.substring(colon + 1).trim();
      if (!protocol.equalsIgnoreCase(wantProtocol)) return false;
      if (wantProtocol.equals("http")) {
        int sp = what.indexOf(' ');
        String wantMethod = sp >= 0 ? what.substring(0, sp) : what;
        String wantPath = sp >= 0 ? what.substring(sp + 1).trim() : "";
        if (wantPath.isEmpty() && wantMethod.startsWith("/")) {
          wantPath = wantMethod;
          wantMethod = "";
        }
        int q = target.indexOf('?');
        String path = q >= 0 ? target.substring(0, q) : target;
        if (!wantMethod.isEmpty() && !wantMethod.equals("*") && !wantMethod.equalsIgnoreCase(method)) return false;
        return wantPath.isEmpty() || glob(wantPath).matcher(path).matches();
      }
      return glob(what).matcher(target).matches();
    }
  }

  /** One boundary this process knows, its switch and its counters. */
  static final class Declared {
    final Boundary boundary;
    volatile boolean enabled = true;
    final String source;
    final AtomicLong entries = new AtomicLong();
    final AtomicLong propagated = new AtomicLong();
    final AtomicLong active = new AtomicLong();
    final AtomicLong events = new AtomicLong();

    Declared(Boundary b, String source) {
      this.boundary = b;
      this.source = source;
    }
  }

  /** An instance in flight: its boundary and where its thread's ring stood at entry. */
  static final class Instance {
    final Declared declared;
    final long rowsAtEntry;
    /** Its handler has returned (a periodic task handed off inside is followed until then). */
    volatile boolean ended;

    Instance(Declared d, long rows) {
      this.declared = d;
      this.rowsAtEntry = rows;
    }
  }

  /** A SPEC that does not parse, with the parser's message. */
  static final class BadSpec extends Exception {
    BadSpec(String message) {
      super(message, null, false, false);
    }
  }

  // Invariant: one Declared per entry; written under `this` lock, read lock-free.
  private static final CopyOnWriteArrayList<Declared> declared = new CopyOnWriteArrayList<>();
  /** hops mode with at least one boundary: lock and monitor hooks record inside instances only. */
  static volatile boolean gate;
  /** Instances open now, in every boundary (hand-off hooks skip their ring lookup at 0). */
  static final java.util.concurrent.atomic.AtomicInteger OPEN = new java.util.concurrent.atomic.AtomicInteger();
  /** Installs the hooks boundaries need that start-up did not (run once, at the first enable). */
  static volatile Runnable onFirstEnable;

  private Boundaries() {}

  static boolean any() {
    return !declared.isEmpty();
  }

  /** At start: WILLOWISP_BOUNDARIES ({@code |}-separated); bad specs are faults. */
  static void configure(Recorder rec, String specs) {
    for (String spec : specs.split("\\|")) {
      if (spec.isBlank()) continue;
      try {
        add(parse(spec.trim(), "WILLOWISP_BOUNDARIES"), "config");
      } catch (BadSpec e) {
        rec.fault("boundaries", e.getMessage());
      }
    }
    gate = any() && rec.cfg.mode.equals("hops");
  }

  static Boundary parse(String spec, String source) throws BadSpec {
    Map<String, String> fields = new LinkedHashMap<>();
    String where = source + " " + cut(spec);
    for (String part : spec.split(";", -1)) {
      if (part.isBlank()) continue;
      int eq = part.indexOf('=');
      String key = eq >= 0 ? part.substring(0, eq).trim() : part.trim();
      if (eq < 0 || !List.of(KEYS).contains(key)) {
        throw new BadSpec(where + ": " + cut(part.trim()) + " is not one of entry=..., exit=..., runtimes=...");
      }
      if (fields.containsKey(key)) throw new BadSpec(where + ": " + key + " is given twice");
      fields.put(key, part.substring(eq + 1).trim());
    }
    String entry = fields.getOrDefault("entry", "");
    int colon = entry.indexOf(':');
    if (colon <= 0 || entry.substring(0, colon).isBlank() || entry.substring(colon + 1).isBlank()) {
      throw new BadSpec(where + ": needs entry=PROTOCOL:WHAT, e.g. entry=http:POST /checkout");
    }
    String exit = fields.getOrDefault("exit", "");
    if (!exit.isEmpty() && exit.indexOf(':') < 0) {
      throw new BadSpec(where + ": exit must be PROTOCOL:WHAT, e.g. exit=http:reply");
    }
    List<String> runtimes = new ArrayList<>();
    for (String r : fields.getOrDefault("runtimes", "").split(",")) {
      String x = r.trim();
      if (x.isEmpty()) continue;
      if (!RUNTIMES.contains(x)) {
        throw new BadSpec(where + ": unknown runtime " + cut(x) + " (one of " + String.join(", ", RUNTIMES) + ")");
      }
      runtimes.add(x);
    }
    return new Boundary(spec, entry.trim(), exit, List.copyOf(runtimes));
  }

  private static String cut(String s) {
    return "'" + (s.length() > 64 ? s.substring(0, 64) + "…" : s) + "'";
  }

  static synchronized Declared add(Boundary b, String source) {
    for (Declared d : declared) if (d.boundary.entry.equals(b.entry)) return d;
    Declared d = new Declared(b, source);
    declared.add(d);
    return d;
  }

  static Declared find(String name) {
    String key = name.trim();
    for (Declared d : declared) {
      Boundary b = d.boundary;
      if (key.equals(b.entry) || key.equals(b.spec) || key.equals(b.id) || key.equals("b-" + b.id)) return d;
    }
    return null;
  }

  // --- what the control channel calls -----------------------------------------------

  /** A known boundary by name, spec or id, or a new one from a SPEC; returns its name. */
  static String enable(Recorder rec, String specOrName) throws BadSpec {
    Declared d = find(specOrName);
    if (d == null) d = add(parse(specOrName, "enable"), "ctl");
    d.enabled = true;
    if (rec.cfg.mode.equals("hops")) gate = true;
    Runnable r = onFirstEnable;
    onFirstEnable = null;
    if (r != null) r.run();
    return d.boundary.entry;
  }

  static String disable(String name) throws BadSpec {
    Declared d = find(name);
    if (d == null) {
      List<String> known = new ArrayList<>();
      for (Declared x : declared) known.add("'" + x.boundary.entry + "'");
      throw new BadSpec(
          "no boundary " + cut(name) + " in this process (known: " + (known.isEmpty() ? "none" : String.join(", ", known)) + ")");
    }
    d.enabled = false;
    return d.boundary.entry;
  }

  /** The control channel's status result (without its own counters). */
  static Map<String, Object> status(Recorder rec) {
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("pid", rec.pid);
    out.put("process_id", rec.processId);
    out.put("service", rec.cfg.service);
    out.put("runtime", RUNTIME);
    out.put("mode", rec.cfg.mode);
    out.put("gate", gate);
    out.put("events", rec.eventsSoFar());
    out.put("dropped", rec.droppedSoFar());
    out.put("faults", rec.faults.get());
    out.put("cost_ns_per_event", rec.costNsPerEvent);
    List<Object> list = new ArrayList<>();
    for (Declared d : declared) {
      Map<String, Object> b = new LinkedHashMap<>();
      b.put("name", d.boundary.entry);
      b.put("spec", d.boundary.spec);
      b.put("id", d.boundary.id);
      b.put("enabled", d.enabled);
      b.put("source", d.source);
      b.putAll(costs(rec, d));
      list.add(b);
    }
    out.put("boundaries", list);
    return out;
  }

  private static Map<String, Object> costs(Recorder rec, Declared d) {
    Map<String, Object> m = new LinkedHashMap<>();
    long ev = d.events.get();
    m.put("entries", d.entries.get());
    m.put("propagated", d.propagated.get());
    m.put("active", d.active.get());
    m.put("events", ev);
    m.put("hook_ns", ev * rec.costNsPerEvent);
    m.put("serialize_ns", ev * rec.flusher.serializeNsPerEvent);
    m.put("cost_ns", ev * (rec.costNsPerEvent + rec.flusher.serializeNsPerEvent));
    return m;
  }

  /** The stats record's {@code by_boundary}: {name: {spec, source, entries, ...}}. */
  static String byBoundaryJson(Recorder rec) {
    Map<String, Object> m = new java.util.TreeMap<>();
    for (Declared d : declared) {
      Map<String, Object> b = new LinkedHashMap<>();
      b.put("spec", d.boundary.spec);
      b.put("source", d.source);
      b.putAll(costs(rec, d));
      m.put(d.boundary.entry, b);
    }
    return Json.write(m);
  }

  // --- what the server hooks call ---------------------------------------------------

  /**
   * An inbound hop on the calling thread (ring r): opens the first enabled boundary it
   * starts, or the one its {@code wisp} tracestate member carries. Returns the instance
   * (now current on r) or null.
   */
  static Instance enter(Ring r, String protocol, String method, String target, String member) {
    if (declared.isEmpty() || r.boundary != null) return null;
    Declared found = null;
    for (Declared d : declared) {
      if (d.enabled && d.boundary.matches(protocol, method, target)) {
        found = d;
        d.entries.incrementAndGet();
        break;
      }
    }
    if (found == null && member != null && member.startsWith("b-")) {
      String id = member.substring(2);
      for (Declared d : declared) {
        if (d.enabled && d.boundary.id.equals(id) && d.boundary.allows(RUNTIME)) {
          found = d;
          d.propagated.incrementAndGet();
          break;
        }
      }
    }
    if (found == null) return null;
    found.active.incrementAndGet();
    OPEN.incrementAndGet();
    Instance inst = new Instance(found, r.written());
    r.boundary = inst;
    return inst;
  }

  /** The handler is done: closes the instance and counts its events. */
  static void leave(Ring r, Instance inst) {
    if (inst == null) return;
    if (r.boundary == inst) r.boundary = null;
    inst.ended = true;
    Declared d = inst.declared;
    d.active.decrementAndGet();
    OPEN.decrementAndGet();
    d.events.addAndGet(Math.max(0, r.written() - inst.rowsAtEntry));
  }

  /** The {@code wisp} member value for a hop made on ring r's thread, or null. */
  static String member(Ring r) {
    Object b = r == null ? null : r.boundary;
    return b instanceof Instance ? "b-" + ((Instance) b).declared.boundary.id : null;
  }

  /** The {@code wisp} member of a tracestate header ("" if none). */
  static String memberOf(String tracestate) {
    if (tracestate == null) return "";
    for (String part : tracestate.split(",")) {
      String p = part.trim();
      if (p.startsWith("wisp=")) return p.substring(5).trim();
    }
    return "";
  }

  /** A tracestate with {@code wisp=value} first (replacing an older one), at most 32 members. */
  static String withMember(String tracestate, String value) {
    StringBuilder b = new StringBuilder("wisp=").append(value);
    int n = 1;
    if (tracestate != null) {
      for (String part : tracestate.split(",")) {
        String p = part.trim();
        if (p.isEmpty() || p.startsWith("wisp=") || n >= 32) continue;
        b.append(',').append(p);
        n++;
      }
    }
    return b.toString();
  }

  /** A glob ({@code *}, {@code ?}, {@code [seq]}, {@code [!seq]}) as a regex, like fnmatchcase. */
  static Pattern glob(String g) {
    StringBuilder re = new StringBuilder();
    for (int i = 0; i < g.length(); i++) {
      char c = g.charAt(i);
      if (c == '*') {
        re.append(".*");
      } else if (c == '?') {
        re.append('.');
      } else if (c == '[') {
        int j = g.indexOf(']', i + 2);
        if (j < 0) {
          re.append("\\[");
        } else {
          String set = g.substring(i + 1, j);
          re.append('[');
          if (set.startsWith("!")) {
            re.append('^');
            set = set.substring(1);
          }
          re.append(set.replace("\\", "\\\\").replace("[", "\\[")).append(']');
          i = j;
        }
      } else {
        re.append(Pattern.quote(String.valueOf(c)));
      }
    }
    return Pattern.compile(re.toString(), Pattern.DOTALL);
  }

  static String sha256Prefix(String s) {
    try {
      byte[] h = MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8));
      StringBuilder b = new StringBuilder();
      for (int i = 0; i < 4; i++) b.append(String.format("%02x", h[i] & 0xff));
      return b.toString();
    } catch (Exception e) {
      return "00000000";
    }
  }
}
