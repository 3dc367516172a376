// Virtual threads (JDK 21+) that contend on a ReentrantLock, sleep, and one that pins.
//
// The main thread takes the shared ReentrantLock and keeps it until every "vworker-N"
// virtual thread is parked waiting for it (their Thread.State says WAITING: no sleeps that
// hope). A virtual thread that parks unmounts from its carrier, and JFR writes no
// jdk.ThreadPark for that; each worker then sleeps briefly (jdk.ThreadSleep). "vpinned" sleeps inside a class initializer, where a virtual
// thread cannot unmount (it stays pinned to its carrier even after JEP 491), so JFR
// records jdk.VirtualThreadPinned.
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.ReentrantLock;

public class Virtual {
    static final ReentrantLock lock = new ReentrantLock();
    static final int WORKERS = 4;

    static final class SlowInit {
        static final long VALUE;

        static {
            try {
                Thread.sleep(30);
            } catch (InterruptedException e) {
                throw new RuntimeException(e);
            }
            VALUE = 42;
        }
    }

    static void awaitParked(List<Thread> others) {
        for (Thread t : others) {
            while (t.getState() != Thread.State.WAITING) {
                Thread.onSpinWait();
            }
        }
    }

    public static void main(String[] args) throws Exception {
        List<Thread> others = new ArrayList<>();
        lock.lock();
        for (int i = 0; i < WORKERS; i++) {
            others.add(Thread.ofVirtual().name("vworker-" + i).start(() -> {
                lock.lock();
                try {
                    Thread.sleep(1);
                } catch (InterruptedException e) {
                    return;
                } finally {
                    lock.unlock();
                }
            }));
        }
        // main owns the lock until every worker is parked on it, so each one's park is real
        awaitParked(others);
        lock.unlock();
        Thread pinned = Thread.ofVirtual().name("vpinned").start(() -> System.out.println(SlowInit.VALUE));
        pinned.join();
        for (Thread t : others) {
            t.join();
        }
        System.out.println("ready");
    }
}
