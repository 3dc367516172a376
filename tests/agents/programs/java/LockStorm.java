import java.util.concurrent.locks.ReentrantLock;

/**
 * A quiet lock-order inversion (cache then index on one thread, index then cache on
 * another), then a storm: one thread takes one ReentrantLock args[0] times as fast as it
 * can (a lock-heavy program). Prints "done" at the end.
 */
public class LockStorm {
  static final ReentrantLock cache = new ReentrantLock();
  static final ReentrantLock index = new ReentrantLock();
  static final ReentrantLock storm = new ReentrantLock();
  static volatile long sink;

  public static void main(String[] args) throws Exception {
    int n = Integer.parseInt(args[0]);
    // at once, a latch between them: ordered in this schedule only (a join would order
    // them for good, and no inversion could then hang)
    java.util.concurrent.CountDownLatch wrote = new java.util.concurrent.CountDownLatch(1);
    Thread writer = new Thread(() -> { both(cache, index); wrote.countDown(); }, "writer");
    Thread reader = new Thread(() -> {
      try {
        wrote.await();
      } catch (InterruptedException e) {
        return;
      }
      both(index, cache);
    }, "reader");
    writer.start();
    reader.start();
    writer.join();
    reader.join();
    Thread stormer = new Thread(() -> {
      long x = 1;
      for (int i = 0; i < n; i++) {
        storm.lock();
        try {
          x = x * 6364136223846793005L + 1442695040888963407L;
        } finally {
          storm.unlock();
        }
      }
      sink = x;
    }, "stormer");
    stormer.start();
    stormer.join();
    System.out.println("done");
  }

  static void both(ReentrantLock first, ReentrantLock second) {
    first.lock();
    try {
      second.lock();
      second.unlock();
    } finally {
      first.unlock();
    }
  }
}
