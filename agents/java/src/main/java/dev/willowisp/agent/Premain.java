package dev.willowisp.agent;

import java.lang.instrument.Instrumentation;
import java.util.jar.JarFile;

/**
 * The {@code -javaagent} entry point. It only puts the agent's jar on the bootstrap class
 * path (so hooks inlined into {@code java.base} can call the agent) and starts {@link
 * Agent} from there, by reflection: this class is loaded by the application class loader
 * and must not pull agent classes into it (only {@link Config}, to decide whether to start).
 * Nothing here may throw into the JVM's start-up.
 */
public final class Premain {
  private Premain() {}

  public static void premain(String args, Instrumentation inst) {
    String disabled = System.getenv("WILLOWISP_DISABLED");
    if (disabled != null && !disabled.isEmpty() && !disabled.equals("0")) return;
    try {
      // A JVM that is not to be recorded (no WILLOWISP_OUT, a build tool, outside the
      // include list) is left exactly as it was: not even the class path changes. Config
      // is loaded here by the application class loader; the agent proper uses its own copy.
      String cmd = System.getProperty("sun.java.command", "");
      if (!Config.fromEnv(System.getenv(), cmd).wanted(cmd)) return;
      String jar = Premain.class.getProtectionDomain().getCodeSource().getLocation().toURI().getPath();
      inst.appendToBootstrapClassLoaderSearch(new JarFile(jar));
      Class<?> agent = Class.forName("dev.willowisp.agent.Agent", true, null);
      agent.getMethod("start", String.class, Instrumentation.class).invoke(null, args, inst);
    } catch (Throwable e) {
      // the agent is off for this JVM; the program runs as if it were not there
    }
  }

  public static void agentmain(String args, Instrumentation inst) {
    premain(args, inst);
  }
}
