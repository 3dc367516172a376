import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A waiter holds {@code gate} twice (depth 2) and waits on its condition {@code ready}: first
 * a timed await that times out (nobody signals yet), then until main signals. Await releases
 * the lock fully and re-acquires it at the same depth, so main takes {@code gate} while the
 * waiter waits. Main signals once it sees the waiter waiting (hasWaiters, polled). Then the
 * waiter holds a read-write lock's write lock and awaits its condition until a
 * timeout.
 */
public class ConditionWait {
  static final ReentrantLock gate = new ReentrantLock();
  static final Condition ready = gate.newCondition();
  static final ReentrantReadWriteLock books = new ReentrantReadWriteLock();
  static final Condition audited = books.writeLock().newCondition();
  static volatile boolean armed;
  static boolean go;
  static boolean timedOut;

  public static void main(String[] args) throws Exception {
    Thread waiter = new Thread(ConditionWait::waitForGo, "waiter");
    waiter.start();
    long deadline = System.nanoTime() + 20_000_000_000L;
    while (!waiting(waiter)) {
      if (System.nanoTime() > deadline) throw new IllegalStateException("the waiter never waited");
      LockSupport.parkNanos(1_000_000L);
    }
    gate.lock();
    try {
      go = true;
      ready.signal();
    } finally {
      gate.unlock();
    }
    waiter.join();
    System.out.println("done " + timedOut);
  }

  /**
   * Is the waiter in its second await? Looked at without the lock first (each poll would
   * be two more recorded lock events), then confirmed with it, which the await released.
   */
  static boolean waiting(Thread waiter) {
    if (!armed || waiter.getState() != Thread.State.WAITING) return false;
    gate.lock();
    try {
      return armed && gate.hasWaiters(ready);
    } finally {
      gate.unlock();
    }
  }

  static void waitForGo() {
    gate.lock();
    gate.lock();
    try {
      timedOut = !ready.await(1, TimeUnit.MILLISECONDS);
      armed = true;
      while (!go) ready.await();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } finally {
      gate.unlock();
      gate.unlock();
    }
    books.writeLock().lock();
    try {
      timedOut &= !audited.await(1, TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } finally {
      books.writeLock().unlock();
    }
  }
}
