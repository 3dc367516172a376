// A busy program for measuring import speed: threads that contend on a few monitors,
// wait/notify through a bounded buffer and park on a ReentrantLock, for a given number of
// seconds (the first argument, default 10), doing a little arithmetic between operations
// (the second argument: iterations, default 20000). Not used by the tests; it is the
// program behind the import timings in docs/import.md.
import java.util.ArrayDeque;
import java.util.concurrent.locks.ReentrantLock;

public class Busy {
    static final Object[] monitors = {new Object(), new Object(), new Object()};
    static final ArrayDeque<Integer> buffer = new ArrayDeque<>();
    static final ReentrantLock lock = new ReentrantLock();
    static long counter;
    static volatile long sink;

    static void put(int v) throws InterruptedException {
        synchronized (buffer) {
            while (buffer.size() >= 4) {
                buffer.wait();
            }
            buffer.add(v);
            buffer.notifyAll();
        }
    }

    static int take() throws InterruptedException {
        synchronized (buffer) {
            while (buffer.isEmpty()) {
                buffer.wait();
            }
            int v = buffer.poll();
            buffer.notifyAll();
            return v;
        }
    }

    public static void main(String[] args) throws Exception {
        long seconds = args.length > 0 ? Long.parseLong(args[0]) : 10;
        int work = args.length > 1 ? Integer.parseInt(args[1]) : 20000;
        long end = System.nanoTime() + seconds * 1_000_000_000L;
        Thread[] threads = new Thread[8];
        for (int i = 0; i < threads.length; i++) {
            final int me = i;
            threads[i] = new Thread(() -> {
                try {
                    int n = 0;
                    while (System.nanoTime() < end) {
                        synchronized (monitors[n % monitors.length]) {
                            counter++;
                        }
                        if (me % 2 == 0) {
                            put(n);
                        } else {
                            take();
                        }
                        lock.lock();
                        try {
                            counter++;
                        } finally {
                            lock.unlock();
                        }
                        long x = 0;
                        for (int k = 0; k < work; k++) {
                            x += (long) k * k;
                        }
                        sink = x;
                        n++;
                    }
                } catch (InterruptedException e) {
                    return;
                }
            }, "busy-" + i);
            threads[i].start();
        }
        for (Thread t : threads) {
            t.join(seconds * 1000 + 5000);
        }
        System.out.println("ready");
        System.exit(0);
    }
}
