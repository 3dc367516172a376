import java.io.BufferedReader;
import java.io.InputStreamReader;

/**
 * A holder keeps {@code ledger} while a second thread is blocked entering it, until a line
 * arrives on stdin: the stuck-thread sampler sees the wait (and the holder) while the
 * synchronized hooks (WILLOWISP_JAVA_SYNC=MonitorHeld) record both threads' holds.
 */
public class MonitorHeld {
  static final Object ledger = new Object();

  public static void main(String[] args) throws Exception {
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
    Thread[] blocked = new Thread[1];
    Thread holder =
        new Thread(
            () -> {
              synchronized (ledger) {
                blocked[0] = new Thread(MonitorHeld::enter, "blocked");
                blocked[0].start();
                awaitBlocked(blocked[0]);
                System.out.println("blocked");
                try {
                  in.readLine();
                } catch (java.io.IOException e) {
                  throw new IllegalStateException(e);
                }
              }
            },
            "holder");
    holder.start();
    holder.join();
    blocked[0].join();
    System.out.println("done");
  }

  static void enter() {
    synchronized (ledger) {
      ledger.hashCode();
    }
  }

  static void awaitBlocked(Thread t) {
    long deadline = System.nanoTime() + 20_000_000_000L;
    while (t.getState() != Thread.State.BLOCKED) {
      if (System.nanoTime() > deadline) throw new IllegalStateException("never blocked");
      Thread.onSpinWait();
    }
  }
}
