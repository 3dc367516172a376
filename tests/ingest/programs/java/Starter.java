// A parent that starts threads and waits at once, as a server's accept loop or a test's
// setup does: main starts a thread and sleeps 20 ms, ten times, then starts one more and
// joins them all. JFR's jdk.ThreadStart is committed by the new thread as it begins to
// run, usually after main has gone to sleep or into join: its unit.create must still come
// before main's wait, which keeps its whole length.
import java.util.ArrayList;
import java.util.List;

public class Starter {
    public static void main(String[] args) throws Exception {
        List<Thread> started = new ArrayList<>();
        for (int i = 0; i < 10; i++) {
            Thread t = new Thread(() -> {}, "child-" + i);
            t.start();
            Thread.sleep(20);
            started.add(t);
        }
        Thread last = new Thread(Starter::linger, "lingerer");
        last.start();
        last.join();
        for (Thread t : started) {
            t.join();
        }
        System.out.println("ready");
    }

    static void linger() {
        try {
            Thread.sleep(50);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
