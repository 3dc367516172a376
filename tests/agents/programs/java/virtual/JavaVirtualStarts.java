import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import jdk.jfr.FlightRecorder;
import jdk.jfr.FlightRecorderListener;
import jdk.jfr.Recording;
import jdk.jfr.RecordingState;

/**
 * A virtual-thread-heavy microbenchmark (JDK 21+): each round starts N virtual threads
 * (Thread.ofVirtual().start), each adding one to a counter, and joins them all; prints one
 * line per round, {@code round <i> <ms>}, and the counter at the end (N * rounds).
 * Usage: {@code java JavaVirtualStarts [N=100000] [rounds=6] [jfr]}; with {@code jfr} it
 * first waits (up to 30 s) until a JFR recording runs, so that an agent's JFR stream sees
 * every round (it starts about a second after the JVM), and prints {@code jfr} or
 * {@code no-jfr}.
 */
public final class JavaVirtualStarts {
  private JavaVirtualStarts() {}

  public static void main(String[] args) throws Exception {
    int n = args.length > 0 ? Integer.parseInt(args[0]) : 100_000;
    int rounds = args.length > 1 ? Integer.parseInt(args[1]) : 6;
    if (args.length > 2 && args[2].equals("jfr")) {
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
    AtomicLong count = new AtomicLong();
    Runnable task = count::incrementAndGet;
    for (int round = 0; round < rounds; round++) {
      List<Thread> threads = new ArrayList<>(n);
      long t = System.nanoTime();
      for (int i = 0; i < n; i++) threads.add(Thread.ofVirtual().start(task));
      for (Thread th : threads) th.join();
      System.out.printf("round %d %.1f%n", round, (System.nanoTime() - t) / 1e6);
    }
    System.out.println("count " + count.get());
  }
}
