import jdk.jfr.FlightRecorder;
import jdk.jfr.RecordingState;

/**
 * Waits until a JFR recording runs (the agent's stream), then waits 150 ms on a monitor
 * (Object.wait, timing out) and exits at once: JFR has not handed that wait to any stream
 * yet when the JVM starts to exit. Prints "done".
 */
public class WaitThenExit {
  static final Object signal = new Object();

  public static void main(String[] args) throws Exception {
    while (FlightRecorder.getFlightRecorder().getRecordings().stream()
        .noneMatch(r -> r.getState() == RecordingState.RUNNING)) {
      Thread.sleep(5); // the agent starts JFR on its own thread
    }
    synchronized (signal) {
      signal.wait(150);
    }
    System.out.println("done");
  }
}
