import java.util.concurrent.CountDownLatch;

/**
 * A program that waits to be stopped: its own thread "waiter" waits on a latch nobody counts
 * down, main joins it, and a shutdown hook of its own ("cleanup") runs at SIGTERM. Prints
 * "ready PID" once the waiter waits. The JVM's own threads (Signal Dispatcher, the SIGTERM
 * handler, Reference Handler, ...) run beside them.
 */
public class RuntimeThreads {
  static final CountDownLatch never = new CountDownLatch(1);

  public static void main(String[] args) throws Exception {
    Runtime.getRuntime().addShutdownHook(new Thread(() -> System.out.println("bye"), "cleanup"));
    Thread waiter = new Thread(RuntimeThreads::waitForever, "waiter");
    waiter.start();
    while (waiter.getState() != Thread.State.WAITING) Thread.onSpinWait();
    System.out.println("ready " + ProcessHandle.current().pid());
    waiter.join();
  }

  static void waitForever() {
    try {
      never.await();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
