import java.util.concurrent.CyclicBarrier;

/** Two threads take two monitors in opposite orders and deadlock forever (a synchronized inversion). */
public class MonitorDeadlock {
  static final Object accounts = new Object();
  static final Object ledger = new Object();
  static final CyclicBarrier bothHoldOne = new CyclicBarrier(3);

  public static void main(String[] args) throws Exception {
    Thread t1 = new Thread(() -> transfer(), "transfer");
    Thread t2 = new Thread(() -> audit(), "audit");
    t1.start();
    t2.start();
    bothHoldOne.await();
    System.out.println("deadlocking");
    System.out.flush();
    t1.join();
  }

  static void transfer() {
    synchronized (accounts) {
      await();
      synchronized (ledger) {
        System.out.println("transfer done");
      }
    }
  }

  static void audit() {
    synchronized (ledger) {
      await();
      synchronized (accounts) {
        System.out.println("audit done");
      }
    }
  }

  static void await() {
    try {
      bothHoldOne.await();
    } catch (Exception e) {
      throw new RuntimeException(e);
    }
  }
}
