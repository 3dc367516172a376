import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.locks.ReentrantLock;

/** Two threads take two ReentrantLocks in opposite orders and deadlock forever. */
public class LockDeadlock {
  static final ReentrantLock stock = new ReentrantLock();
  static final ReentrantLock orders = new ReentrantLock();
  static final CyclicBarrier bothHoldOne = new CyclicBarrier(3);

  public static void main(String[] args) throws Exception {
    Thread t1 = new Thread(LockDeadlock::reserve, "reserve");
    Thread t2 = new Thread(LockDeadlock::cancel, "cancel");
    t1.start();
    t2.start();
    bothHoldOne.await();
    System.out.println("deadlocking");
    System.out.flush();
    t1.join();
  }

  static void reserve() {
    stock.lock();
    try {
      await();
      orders.lock();
      orders.unlock();
    } finally {
      stock.unlock();
    }
  }

  static void cancel() {
    orders.lock();
    try {
      await();
      stock.lock();
      stock.unlock();
    } finally {
      orders.unlock();
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
