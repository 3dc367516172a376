import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A shop whose handlers do their work on pools: POST /order hands it to an ExecutorService
 * (submit, or with ?async=1 CompletableFuture.supplyAsync on that pool) and waits for the
 * answer; GET /peek hands the same kind of work, on other locks, to the same pools. The work
 * takes two ReentrantLocks and two monitors in the order the query asks (?order=ab or
 * ?order=ba; the packers' thread runs ab, the shippers' ba): two requests in opposite
 * orders are a lock-order inversion between two pool threads, without a hang.
 * Prints "ready PORT"; serves until stdin closes, then prints "bye".
 */
public class JavaPoolShop {
  static final ReentrantLock stock = new ReentrantLock();
  static final ReentrantLock ledger = new ReentrantLock();
  static final Object cart = new Object();
  static final Object payment = new Object();
  static final ReentrantLock shelf = new ReentrantLock();
  static final ReentrantLock aisle = new ReentrantLock();
  static final Object basket = new Object();
  static final Object wishlist = new Object();
  /** Work in the ab order goes to the packers, in the ba order to the shippers. */
  static final ExecutorService packers = Executors.newSingleThreadExecutor();

  static final ExecutorService shippers = Executors.newSingleThreadExecutor();

  public static void main(String[] args) throws Exception {
    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    ExecutorService handlers = Executors.newFixedThreadPool(2);
    server.setExecutor(handlers);
    server.createContext("/order", ex -> answer(ex, order(ex.getRequestURI().getQuery())));
    server.createContext("/peek", ex -> answer(ex, peek(ex.getRequestURI().getQuery())));
    server.start();
    System.out.println("ready " + server.getAddress().getPort());
    System.out.flush();
    while (System.in.read() >= 0) {
      // serve until stdin closes
    }
    server.stop(0);
    // a client has its answer before the handler's task is over (the agent's leave of the
    // boundary instance runs after the handler returns): exit only once every handler task
    // has ended, so the last stats count no instance as active
    handlers.shutdown();
    handlers.awaitTermination(30, TimeUnit.SECONDS);
    packers.shutdown();
    shippers.shutdown();
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

  static String order(String query) {
    boolean ab = query != null && query.contains("order=ab");
    ExecutorService pool = ab ? packers : shippers;
    try {
      if (query != null && query.contains("async=1")) {
        return CompletableFuture.supplyAsync(() -> work(ab, stock, ledger, cart, payment, "ordered"), pool).get();
      }
      return pool.submit(() -> work(ab, stock, ledger, cart, payment, "ordered")).get();
    } catch (Exception e) {
      return "failed: " + e;
    }
  }

  static String peek(String query) {
    boolean ab = query != null && query.contains("order=ab");
    ExecutorService pool = ab ? packers : shippers;
    try {
      return pool.submit(() -> work(ab, shelf, aisle, basket, wishlist, "peeked")).get();
    } catch (Exception e) {
      return "failed: " + e;
    }
  }

  static String work(boolean ab, ReentrantLock a, ReentrantLock b, Object x, Object y, String answer) {
    ReentrantLock first = ab ? a : b;
    ReentrantLock second = ab ? b : a;
    first.lock();
    try {
      second.lock();
      second.unlock();
    } finally {
      first.unlock();
    }
    Object outer = ab ? x : y;
    Object inner = ab ? y : x;
    synchronized (outer) {
      synchronized (inner) {
        outer.hashCode();
      }
    }
    return answer + " on " + Thread.currentThread().getName();
  }
}
