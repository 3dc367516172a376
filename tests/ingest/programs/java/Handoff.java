// A contended monitor handed from one thread to another, then Object.wait/notify.
//
// "handoff-holder" takes the monitor `gate` and keeps it until "handoff-taker" is
// BLOCKED trying to enter it (its Thread.State says so: no sleeps), then releases it, so
// JFR records a jdk.JavaMonitorEnter for the taker whose previousOwner is the holder.
// "cond-waiter" then waits on `box` until "cond-notifier" (which waits for the waiter to
// be WAITING) notifies it: a jdk.JavaMonitorWait whose notifier is the notifier.
public class Handoff {
    static final Object gate = new Object();
    static final Object box = new Object();
    static boolean filled;

    static void awaitState(Thread t, Thread.State s) {
        while (t.getState() != s) {
            Thread.onSpinWait();
        }
    }

    static void take() {
        synchronized (gate) {
            System.out.println("taker has the gate");
        }
    }

    static void consume() {
        synchronized (box) {
            while (!filled) {
                try {
                    box.wait();
                } catch (InterruptedException e) {
                    return;
                }
            }
        }
    }

    static void fill() {
        synchronized (box) {
            filled = true;
            box.notify();
        }
    }

    public static void main(String[] args) throws Exception {
        Thread taker = new Thread(Handoff::take, "handoff-taker");
        Thread holder = new Thread(() -> {
            synchronized (gate) {
                taker.start();
                awaitState(taker, Thread.State.BLOCKED);
            }
        }, "handoff-holder");
        holder.start();
        holder.join();
        taker.join();
        Thread waiter = new Thread(Handoff::consume, "cond-waiter");
        Thread notifier = new Thread(() -> {
            awaitState(waiter, Thread.State.WAITING);
            fill();
        }, "cond-notifier");
        waiter.start();
        notifier.start();
        waiter.join();
        notifier.join();
        System.out.println("ready");
    }
}
