import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * Nested holds of one read-write lock: main takes the write lock twice (a method holding it
 * calls another that takes it again), then the read lock twice the same way, then a worker
 * takes the write lock once while main waits for it with join. A nested hold is no second
 * hold: the lock is free again after each outer release.
 */
public class RwNested {
  static final ReentrantReadWriteLock books = new ReentrantReadWriteLock();
  static int balance;

  public static void main(String[] args) throws Exception {
    books.writeLock().lock();
    try {
      deposit(5);
    } finally {
      books.writeLock().unlock();
    }
    books.readLock().lock();
    try {
      System.out.println("balance " + audit());
    } finally {
      books.readLock().unlock();
    }
    Thread worker = new Thread(() -> deposit(1), "worker");
    worker.start();
    worker.join();
    System.out.println("done " + balance);
  }

  /** Takes the write lock, perhaps again: callers may hold it already. */
  static void deposit(int n) {
    books.writeLock().lock();
    try {
      balance += n;
    } finally {
      books.writeLock().unlock();
    }
  }

  /** Takes the read lock, perhaps again. */
  static int audit() {
    books.readLock().lock();
    try {
      return balance;
    } finally {
      books.readLock().unlock();
    }
  }
}
