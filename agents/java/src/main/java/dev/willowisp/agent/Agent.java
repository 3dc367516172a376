package dev.willowisp.agent;

import java.lang.instrument.Instrumentation;

/**
 * Starts recording in this JVM (called from {@link Premain} on the bootstrap class path):
 * settings from the environment, the recorder and its flusher, a shutdown flush, the
 * stuck-thread sampler, JFR streaming and the bytecode hooks. {@code hops} mode installs
 * only the HTTP hooks. Every failure is a counted fault; none reaches the program.
 */
public final class Agent {
  /** The context inherited through TRACEPARENT, or null. */
  static volatile TraceContext inherited;
  /** The unit of the thread that ran premain (its unit.start is written then). */
  static volatile int mainUnit;

  private Agent() {}

  public static void start(String args, Instrumentation inst) {
    Recorder rec = null;
    try {
      String cmd = System.getProperty("sun.java.command", "");
      Config cfg = Config.fromEnv(System.getenv(), cmd);
      if (!cfg.wanted(cmd) || Recorder.INSTANCE != null) return;
      rec = new Recorder(cfg);
      for (String p : cfg.problems) rec.fault("config", p);
      inherited = TraceContext.parse(cfg.traceparent);
      rec.costNsPerEvent = calibrate(rec);
      Recorder.INSTANCE = rec;
      Ring main = rec.ring();
      mainUnit = main.unitId;
      rec.emit(main, Kinds.UNIT_START, main.unitId, Recorder.now(), 0, 0, 0);
      if (inherited != null) {
        int r =
            rec.newResource(
                "spawn", "TRACEPARENT",
                "trace_id", inherited.traceId,
                "span_id", TraceContext.newSpanId(),
                "parent_span_id", inherited.spanId,
                "sampled", inherited.sampled ? 1L : 0L);
        long ppid = ProcessHandle.current().parent().map(ProcessHandle::pid).orElse(0L);
        rec.emit(main, Kinds.PROC_START, main.unitId, Recorder.now(), r, ppid, 0);
      }
      Boundaries.configure(rec, cfg.boundaries);
      rec.startFlusher();
      Recorder stopping = rec;
      Thread hook =
          new Thread(
              () -> {
                try {
                  Control c = Control.active;
                  if (c != null) c.stop();
                } catch (Throwable e) {
                  stopping.fault("control stop", e);
                }
                stopping.stop();
              },
              "willowisp-shutdown");
      rec.agentThreads.add(hook);
      Runtime.getRuntime().addShutdownHook(hook);
      boolean full = cfg.mode.equals("full");
      // hops mode: the sampler only for boundaries (stuck waits inside instances)
      Sampler sampler = full || Boundaries.any() ? Sampler.start(rec) : null;
      if (cfg.hooks) {
        boolean bounded = Boundaries.any();
        // JFR takes platform threads' units from its ThreadStart / End once it runs; the
        // Thread.start / exit hooks write those of threads started before (EarlyThreads)
        EarlyThreads.open = full && cfg.jfr;
        Instrument.install(inst, rec, full || bounded, full || bounded, bounded, true);
        if (!bounded) {
          // a boundary switched on later (willowisp ctl) installs what boundaries need then
          Recorder late = rec;
          Boundaries.onFirstEnable =
              () -> {
                Instrument.installLate(inst, late, !full);
                if (!full) Sampler.start(late);
              };
        }
      } else if (full && cfg.jfr) {
        // no hooks, but still the exit advice that collects JFR's last events
        Instrument.install(inst, rec, false, false, false, false, true);
      }
      Control.start(rec);
      // JFR last, from the flusher once premain has returned: its start (~0.5 s of CPU on
      // its own thread) would otherwise compete with the hooks' installation above for the
      // CPUs, delaying the program's main by as much, and JFR refuses to start before the
      // VM's initialization is complete (it prints an error to stdout)
      if (full && cfg.jfr) {
        Sampler s = sampler;
        Recorder r = rec;
        rec.afterStart(() -> JfrEvents.start(r, s));
      }
      rec.flush();
    } catch (Throwable e) {
      if (rec != null) rec.fault("start", e);
    }
  }

  private static long calibrate(Recorder rec) {
    return calibrate(5);
  }

  /**
   * The hot path's cost per event, measured on a scratch ring (ns): the best of {@code
   * rounds} rounds of 4000 events. At start the code runs interpreted and the figure is
   * high; the flusher measures again with more rounds once the JIT has compiled it.
   */
  static long calibrate(int rounds) {
    Ring r = new Ring(4096, 0, Thread.currentThread(), true);
    long best = Long.MAX_VALUE;
    for (int round = 0; round < rounds; round++) {
      long t = System.nanoTime();
      for (int i = 0; i < 4000; i++) r.add(Kinds.LOCK_ACQUIRED, 1, System.nanoTime(), 1, 0, 0);
      best = Math.min(best, (System.nanoTime() - t) / 4000);
      r.drainTo(new Wtrace.Events(4096)); // empty it, as the flusher would
    }
    return best;
  }
}
