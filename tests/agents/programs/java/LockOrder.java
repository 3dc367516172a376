import java.util.concurrent.CountDownLatch;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Takes two ReentrantLocks in one order on one thread, then in the other order on another
 * running at the same time: no hang (the reader waits on a latch the writer counts down once
 * done: an order of this schedule only, not of the program's structure), an inversion. (Had
 * main joined the writer before starting the reader, the join would order them for good: no
 * inversion could hang.)
 */
public class LockOrder {
  static final ReentrantLock cache = new ReentrantLock();
  static final ReentrantLock index = new ReentrantLock();
  static final CountDownLatch written = new CountDownLatch(1);

  public static void main(String[] args) throws Exception {
    Thread writer = new Thread(LockOrder::write, "writer");
    Thread reader = new Thread(LockOrder::read, "reader");
    writer.start();
    reader.start();
    writer.join();
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
    written.countDown();
  }

  static void read() {
    try {
      written.await();
    } catch (InterruptedException e) {
      return;
    }
    index.lock();
    try {
      cache.lock();
      cache.unlock();
    } finally {
      index.unlock();
    }
  }
}
