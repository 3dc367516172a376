/** Takes two monitors in one order on one thread, then in the other order on another (no hang): a synchronized inversion. */
public class MonitorOrder {
  static final Object pricing = new Object();
  static final Object catalog = new Object();

  public static void main(String[] args) throws Exception {
    Thread update = new Thread(MonitorOrder::update, "update");
    update.start();
    update.join();
    Thread browse = new Thread(MonitorOrder::browse, "browse");
    browse.start();
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
}
