import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.FutureTask;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A shop whose handlers hand their work on in other ways than ThreadPoolExecutor.execute:
 * {@code ?via=thread} starts a platform thread (a Runnable for ab, a Thread subclass for ba),
 * {@code via=vthread} a virtual thread (JDK 21+), {@code via=fj} a ForkJoinPool (submit a
 * Callable for ab, execute a Runnable for ba; one pool per order), {@code via=scheduled} a
 * ScheduledThreadPoolExecutor (schedule for ab; for ba scheduleAtFixedRate, answered after
 * its second run and left running until /stop, which waits for three more runs first). The work takes two ReentrantLocks and two
 * monitors in the order the query asks (?order=ab or ?order=ba): two requests in opposite
 * orders are a lock-order inversion between two threads, without a hang. POST /order uses
 * one set of locks per way, GET /peek another; /stop cancels the periodic task and answers
 * how often it ran. Prints "ready PORT"; serves until stdin closes, then prints "bye".
 */
public class BoundaryHandOffs {
  /** Two ReentrantLocks and two monitors. */
  static final class Locks {
    final ReentrantLock a = new ReentrantLock();
    final ReentrantLock b = new ReentrantLock();
    final Object x = new Object();
    final Object y = new Object();
  }

  static final Map<String, Locks> ORDER =
      Map.of("thread", new Locks(), "vthread", new Locks(), "fj", new Locks(), "scheduled", new Locks());
  static final Map<String, Locks> PEEK =
      Map.of("thread", new Locks(), "vthread", new Locks(), "fj", new Locks(), "scheduled", new Locks());
  static final ForkJoinPool fjAb = new ForkJoinPool(1);
  static final ForkJoinPool fjBa = new ForkJoinPool(1);
  static final ScheduledThreadPoolExecutor schedAb = new ScheduledThreadPoolExecutor(1);
  static final ScheduledThreadPoolExecutor schedBa = new ScheduledThreadPoolExecutor(1);
  static final AtomicInteger periodicRuns = new AtomicInteger();
  /** One permit per periodic run. */
  static final Semaphore ran = new Semaphore(0);
  static volatile ScheduledFuture<?> periodic;

  public static void main(String[] args) throws Exception {
    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    ExecutorService handlers = Executors.newFixedThreadPool(2);
    server.setExecutor(handlers);
    server.createContext("/order", ex -> answer(ex, handOff(ex.getRequestURI().getQuery(), ORDER, "ordered")));
    server.createContext("/peek", ex -> answer(ex, handOff(ex.getRequestURI().getQuery(), PEEK, "peeked")));
    server.createContext("/stop", ex -> answer(ex, stop()));
    server.start();
    System.out.println("ready " + server.getAddress().getPort());
    System.out.flush();
    while (System.in.read() >= 0) {
      // serve until stdin closes
    }
    server.stop(0);
    handlers.shutdown();
    System.out.println("bye");
    System.exit(0);
  }

  static void answer(HttpExchange ex, String text) throws IOException {
    byte[] body = text.getBytes(StandardCharsets.UTF_8);
    ex.sendResponseHeaders(200, body.length);
    try (OutputStream out = ex.getResponseBody()) {
      out.write(body);
    }
  }

  /** Waits for three more periodic runs from now, then cancels it. */
  static String stop() {
    ScheduledFuture<?> p = periodic;
    int from = periodicRuns.get();
    try {
      while (p != null && periodicRuns.get() < from + 3) ran.acquire();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    if (p != null) p.cancel(false);
    return "ran " + periodicRuns.get();
  }

  static String handOff(String query, Map<String, Locks> locks, String answer) {
    String q = query == null ? "" : query;
    boolean ab = q.contains("order=ab");
    String via = q.contains("via=") ? q.substring(q.indexOf("via=") + 4).split("&")[0] : "thread";
    Locks l = locks.get(via);
    boolean inside = locks == ORDER;
    Callable<String> task = () -> work(ab, l, answer);
    try {
      switch (via) {
        case "thread":
          return onThread(ab, task, "spawned-" + (ab ? "ab" : "ba") + "-" + (inside ? "order" : "peek"));
        case "vthread":
          return onVirtualThread(task);
        case "fj":
          if (ab) return fjAb.submit(task).get();
          FutureTask<String> ft = new FutureTask<>(task);
          fjBa.execute(ft);
          return ft.get();
        case "scheduled":
          if (ab || !inside) return (ab ? schedAb : schedBa).schedule(task, 1, TimeUnit.MILLISECONDS).get();
          return everyFewMs(task);
        default:
          return "unknown via " + via;
      }
    } catch (Exception e) {
      return "failed: " + e;
    }
  }

  /** ab: a Thread running a Runnable; ba: a Thread subclass overriding run. */
  static String onThread(boolean ab, Callable<String> task, String name) throws Exception {
    AtomicReference<String> out = new AtomicReference<>();
    Runnable body =
        () -> {
          try {
            out.set(task.call());
          } catch (Exception e) {
            out.set("failed: " + e);
          }
        };
    Thread t =
        ab
            ? new Thread(body, name)
            : new Thread(name) {
              @Override
              public void run() {
                body.run();
              }
            };
    t.start();
    t.join();
    return out.get();
  }

  /** Thread.startVirtualThread, found at run time (the program compiles on JDK 17). */
  static String onVirtualThread(Callable<String> task) throws Exception {
    AtomicReference<String> out = new AtomicReference<>();
    Runnable body =
        () -> {
          try {
            out.set(task.call());
          } catch (Exception e) {
            out.set("failed: " + e);
          }
        };
    Thread t = (Thread) Thread.class.getMethod("startVirtualThread", Runnable.class).invoke(null, body);
    t.join();
    return out.get();
  }

  /** scheduleAtFixedRate every 30 ms: answers after its second run, left running. */
  static String everyFewMs(Callable<String> task) throws Exception {
    CountDownLatch twice = new CountDownLatch(2);
    AtomicReference<String> out = new AtomicReference<>();
    periodic =
        schedBa.scheduleAtFixedRate(
            () -> {
              try {
                out.set(task.call());
              } catch (Exception e) {
                out.set("failed: " + e);
              }
              periodicRuns.incrementAndGet();
              ran.release();
              twice.countDown();
            },
            0,
            30,
            TimeUnit.MILLISECONDS);
    twice.await();
    return out.get();
  }

  static String work(boolean ab, Locks l, String answer) {
    ReentrantLock first = ab ? l.a : l.b;
    ReentrantLock second = ab ? l.b : l.a;
    first.lock();
    try {
      second.lock();
      second.unlock();
    } finally {
      first.unlock();
    }
    Object outer = ab ? l.x : l.y;
    Object inner = ab ? l.y : l.x;
    synchronized (outer) {
      synchronized (inner) {
        outer.hashCode();
      }
    }
    Thread me = Thread.currentThread();
    String name = me.getName().isEmpty() ? "virtual-" + me.getId() : me.getName();
    return answer + " on " + name;
  }
}
