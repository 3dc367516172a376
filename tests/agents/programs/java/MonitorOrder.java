/** Two monitors in one order on one thread, the other order on another running at once, a latch between them (no hang): an inversion. */
public class MonitorOrder {
  static final Object pricing = new Object();
  static final Object catalog = new Object();
  static final java.util.concurrent.CountDownLatch updated = new java.util.concurrent.CountDownLatch(1);
  public static void main(String[] args) throws Exception {
    Thread update = new Thread(() -> { update(); updated.countDown(); }, "update");
    Thread browse = new Thread(() -> { awaitUpdate(); browse(); }, "browse");
    update.start();
    browse.start();
    update.join();
    browse.join();
    System.out.println("done");
  }

  static void update() {
    synchronized (pricing) {
      touch();
    }
  }

  static synchronized void touch() {
    synchronized (catalog) {
      System.out.flush();
    }
  }

  static void browse() {
    synchronized (catalog) {
      synchronized (pricing) {
        System.out.flush();
      }
    }
  }

  /** A latch orders the two in this schedule only (a join would order them for good). */
  static void awaitUpdate() {
    try {
      updated.await();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
