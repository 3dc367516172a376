import java.lang.reflect.Method;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import jdk.jfr.FlightRecorder;
import jdk.jfr.FlightRecorderListener;
import jdk.jfr.Recording;
import jdk.jfr.RecordingState;

/**
 * A virtual thread (JDK 21+) that sleeps 200 ms where it cannot unmount, then exits.
 *
 * <p>{@code clinit}: the sleep is inside a class initializer, which pins the virtual thread
 * to its carrier on every JDK (JEP 491 left class initializers and native frames pinned).
 * {@code monitor}: the same sleep inside a {@code synchronized} block instead, which pins on
 * JDK 21-23 and no longer does from JDK 24 (JEP 491): the control.
 *
 * <p>It first waits until a JFR recording runs (the agent's stream starts on its own thread
 * after {@code premain}; a pin that begins before JFR is enabled is not recorded by any tool)
 * and prints {@code jfr} then, or {@code no-jfr} if none runs within 30 s.
 *
 * <p>The virtual thread is started through reflection so that this file also compiles with a
 * JDK 17 {@code javac} (the other test programs are compiled by one); it prints {@code done}
 * once the virtual thread has finished, and exits 0.
 */
public final class Pinning {
  static final Object LOCK = new Object();

  /** Its initializer runs on whichever thread touches it first: the virtual thread. */
  static final class SlowInit {
    static final long READY;

    static {
      nap();
      READY = System.nanoTime();
    }

    private SlowInit() {}
  }

  private Pinning() {}

  static void nap() {
    try {
      Thread.sleep(200);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** Returns once a JFR recording is running, or after 30 s; says which. */
  static void awaitJfr() throws InterruptedException {
    CountDownLatch running = new CountDownLatch(1);
    FlightRecorder.addListener(
        new FlightRecorderListener() {
          @Override
          public void recordingStateChanged(Recording r) {
            if (r.getState() == RecordingState.RUNNING) running.countDown();
          }
        });
    for (Recording r : FlightRecorder.getFlightRecorder().getRecordings()) {
      if (r.getState() == RecordingState.RUNNING) running.countDown();
    }
    System.out.println(running.await(30, TimeUnit.SECONDS) ? "jfr" : "no-jfr");
  }

  public static void main(String[] args) throws Exception {
    String mode = args.length > 0 ? args[0] : "clinit";
    Runnable task;
    if (mode.equals("clinit")) {
      task = () -> {
        if (SlowInit.READY == 0) {
          System.out.println("uninitialized");
        }
      };
    } else if (mode.equals("monitor")) {
      task = () -> {
        synchronized (LOCK) {
          nap();
        }
      };
    } else {
      throw new IllegalArgumentException("mode: clinit or monitor, not " + mode);
    }
    awaitJfr();
    // Thread.ofVirtual().name("pinned-" + mode).start(task), as a JDK 17 javac accepts it
    Object builder = Thread.class.getMethod("ofVirtual").invoke(null);
    Class<?> ofVirtual = Class.forName("java.lang.Thread$Builder$OfVirtual");
    builder = ofVirtual.getMethod("name", String.class).invoke(builder, "pinned-" + mode);
    Method start = Class.forName("java.lang.Thread$Builder").getMethod("start", Runnable.class);
    Thread vt = (Thread) start.invoke(builder, task);
    vt.join();
    System.out.println("done");
  }
}
