package dev.willowisp.agent;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;

/**
 * Who this JVM is, and what proves which clock it shares: the process record (as the
 * Python agent's identity.py). Process id, pid and parent, service, runtime, argv and the
 * trace context it was started in; and the clock-domain keys (boot id, time namespace, a
 * preloaded libfaketime, the simulated offset), by which the analyzer merges processes into
 * one clock domain only when they match. Read from /proc where Linux has them, empty when
 * not there; never throws.
 */
final class Identity {
  private Identity() {}

  /** The process record for segment number segment (the first record of every segment). */
  static Wtrace.Record record(Config cfg, String processId, long pid, int segment) {
    String cmd = System.getProperty("sun.java.command", "");
    return new Wtrace.Record(Wtrace.R_PROCESS, 0)
        .put("process_id", processId)
        .put("pid", pid)
        .put("ppid", ProcessHandle.current().parent().map(ProcessHandle::pid).orElse(0L))
        .put("host", hostName())
        .put("service", cfg.service)
        .put("runtime", "java")
        .put("runtime_version", System.getProperty("java.runtime.version", ""))
        .put("agent_version", Recorder.AGENT_VERSION)
        .put("boot_id", readFirstLine("/proc/sys/kernel/random/boot_id"))
        .put("time_ns", readLink("/proc/self/ns/time"))
        .put("fake_time", fakeTime())
        .put("simulated_offset_ns", cfg.clockOffsetNs)
        .put("argv", Recorder.cut("java " + cmd, 4096))
        .put("traceparent", cfg.traceparent)
        .put("parent_process_id", cfg.parentProcess)
        .put("run_root", (long) (cfg.runPid != 0 && ProcessHandle.current().parent().map(ProcessHandle::pid).orElse(0L) == cfg.runPid ? 1 : 0))
        .put("mode", cfg.mode)
        .put("boundaries", cfg.boundaries)
        .put("segment", (long) segment)
        .put("jvm", System.getProperty("java.vm.name", "") + " " + System.getProperty("java.vm.version", ""));
  }

  static String hostName() {
    String h = readFirstLine("/proc/sys/kernel/hostname");
    if (!h.isEmpty()) return h;
    try {
      return java.net.InetAddress.getLocalHost().getHostName();
    } catch (Exception e) {
      return "";
    }
  }

  static String readFirstLine(String path) {
    try {
      String s = new String(Files.readAllBytes(Paths.get(path)), StandardCharsets.UTF_8);
      int nl = s.indexOf('\n');
      return (nl >= 0 ? s.substring(0, nl) : s).trim();
    } catch (Throwable e) {
      return "";
    }
  }

  static String readLink(String path) {
    try {
      return Files.readSymbolicLink(Paths.get(path)).toString();
    } catch (Throwable e) {
      return "";
    }
  }

  /** The libfaketime library in LD_PRELOAD, if any (its clock is not the host's). */
  static String fakeTime() {
    String preload = System.getenv().getOrDefault("LD_PRELOAD", "");
    for (String part : preload.split("[:\\s]+")) {
      String base = part.substring(part.lastIndexOf('/') + 1);
      if (base.contains("faketime")) return base;
    }
    return "";
  }
}
