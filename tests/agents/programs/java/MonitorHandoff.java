import java.util.concurrent.CountDownLatch;
import jdk.jfr.FlightRecorder;
import jdk.jfr.FlightRecorderListener;
import jdk.jfr.Recording;
import jdk.jfr.RecordingState;

/**
 * Four threads queue for one monitor, each holding it ~30 ms (contention JFR reports), and
 * a fifth waits on another monitor until main notifies it. It starts once a JFR recording
 * runs (the agent's stream starts asynchronously, after main has begun).
 */
public class MonitorHandoff {
  static final Object till = new Object();
  static final Object bell = new Object();
  static boolean rung;

  public static void main(String[] args) throws Exception {
    CountDownLatch recording = new CountDownLatch(1);
    FlightRecorder.addListener(
        new FlightRecorderListener() {
          @Override
          public void recordingStateChanged(Recording r) {
            if (r.getState() == RecordingState.RUNNING) recording.countDown();
          }
        });
    if (FlightRecorder.isInitialized()) {
      for (Recording r : FlightRecorder.getFlightRecorder().getRecordings()) {
        if (r.getState() == RecordingState.RUNNING) recording.countDown();
      }
    }
    recording.await();
    Thread[] clerks = new Thread[4];
    for (int i = 0; i < clerks.length; i++) {
      clerks[i] = new Thread(MonitorHandoff::count, "clerk-" + i);
      clerks[i].start();
    }
    Thread porter = new Thread(MonitorHandoff::awaitBell, "porter");
    porter.start();
    for (Thread c : clerks) c.join();
    synchronized (bell) {
      rung = true;
      bell.notifyAll();
    }
    porter.join();
    // JFR hands events to in-process streams about once a second, and JDK 17 has no call
    // that hands over the rest at exit: wait (on JFR's own signal) until it has flushed
    // twice since the work, so every stream — the agent's included — has seen it.
    CountDownLatch flushed = new CountDownLatch(2);
    try (jdk.jfr.consumer.RecordingStream rs = new jdk.jfr.consumer.RecordingStream()) {
      rs.onFlush(flushed::countDown);
      rs.startAsync();
      flushed.await(20, java.util.concurrent.TimeUnit.SECONDS);
    }
    System.out.println("done");
  }

  static void count() {
    for (int k = 0; k < 3; k++) {
      synchronized (till) {
        long end = System.nanoTime() + 30_000_000L;
        while (System.nanoTime() < end) {
          Thread.onSpinWait();
        }
      }
    }
  }

  static void awaitBell() {
    synchronized (bell) {
      while (!rung) {
        try {
          bell.wait();
        } catch (InterruptedException e) {
          return;
        }
      }
    }
  }
}
