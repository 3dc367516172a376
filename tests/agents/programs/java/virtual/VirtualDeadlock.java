import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.locks.ReentrantLock;

/** Two virtual threads (JDK 21+) take two ReentrantLocks in opposite orders and deadlock. */
public class VirtualDeadlock {
  static final ReentrantLock shelf = new ReentrantLock();
  static final ReentrantLock box = new ReentrantLock();
  static final CyclicBarrier bothHoldOne = new CyclicBarrier(3);

  public static void main(String[] args) throws Exception {
    Thread a = Thread.ofVirtual().name("pick").start(() -> take(shelf, box));
    Thread b = Thread.ofVirtual().name("pack").start(() -> take(box, shelf));
    bothHoldOne.await();
    System.out.println("deadlocking");
    System.out.flush();
    a.join();
    b.join();
  }

  static void take(ReentrantLock first, ReentrantLock second) {
    first.lock();
    try {
      bothHoldOne.await();
      second.lock();
      second.unlock();
    } catch (Exception e) {
      throw new RuntimeException(e);
    } finally {
      first.unlock();
    }
  }
}
