// Two threads take two monitors in opposite orders and hang forever.
//
// "worker-a" locks `left` then wants `right`; "worker-b" locks `right` then wants `left`.
// A latch makes sure each holds its first monitor before reaching for the second, so the
// deadlock happens every run. Main waits (bounded) until both are BLOCKED, prints "ready"
// and exits: JFR dumps the recording on exit, and its end-of-chunk jdk.ThreadDump shows
// both threads stuck. No JavaMonitorEnter is ever written for them: they never get in.
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

public class Deadlock {
    static final Object left = new Left();
    static final Object right = new Right();
    static final CountDownLatch bothHold = new CountDownLatch(2);

    static final class Left {}

    static final class Right {}

    static void grab(Object first, Object second) {
        synchronized (first) {
            bothHold.countDown();
            try {
                bothHold.await();
            } catch (InterruptedException e) {
                return;
            }
            synchronized (second) {
                System.out.println("never printed");
            }
        }
    }

    public static void main(String[] args) throws Exception {
        Thread a = new Thread(() -> grab(left, right), "worker-a");
        Thread b = new Thread(() -> grab(right, left), "worker-b");
        a.setDaemon(true);
        b.setDaemon(true);
        a.start();
        b.start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (a.getState() != Thread.State.BLOCKED || b.getState() != Thread.State.BLOCKED) {
            if (System.nanoTime() > deadline) {
                System.out.println("timeout");
                System.exit(3);
            }
            Thread.onSpinWait();
        }
        System.out.println("ready");
        System.exit(0);
    }
}
