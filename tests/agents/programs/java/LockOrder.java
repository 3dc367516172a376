import java.util.concurrent.locks.ReentrantLock;

/** Takes two ReentrantLocks in one order on one thread, then in the other order on another: no hang, an inversion. */
public class LockOrder {
  static final ReentrantLock cache = new ReentrantLock();
  static final ReentrantLock index = new ReentrantLock();

  public static void main(String[] args) throws Exception {
    Thread writer = new Thread(LockOrder::write, "writer");
    writer.start();
    writer.join();
    Thread reader = new Thread(LockOrder::read, "reader");
    reader.start();
    reader.join();
    System.out.println("done");
  }

  static void write() {
    cache.lock();
    try {
      index.lock();
      index.unlock();
    } finally {
      cache.unlock();
    }
  }

  static void read() {
    index.lock();
    try {
      cache.lock();
      cache.unlock();
    } finally {
      index.unlock();
    }
  }
}
