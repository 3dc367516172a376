import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A shop whose checkout and browse handlers both take two ReentrantLocks and two monitors,
 * in the order the query asks (?order=ab or ?order=ba): two requests in opposite orders are
 * a lock-order inversion without a hang. Every request runs on a thread of its own. With
 * ?call=1 checkout also calls /audit on itself, which answers the tracestate it received.
 * /refund?side=a and ?side=b take the two refund monitors in opposite orders and meet at a
 * barrier while each holds one: the two requests deadlock forever.
 * Prints "ready PORT"; serves until stdin closes, then prints "bye".
 */
public class BoundaryShop {
  static final ReentrantLock stock = new ReentrantLock();
  static final ReentrantLock ledger = new ReentrantLock();
  static final Object cart = new Object();
  static final Object payment = new Object();
  static final ReentrantLock shelf = new ReentrantLock();
  static final ReentrantLock aisle = new ReentrantLock();
  static final Object basket = new Object();
  static final Object wishlist = new Object();
  static int port;
  static final Object refunds = new Object();
  static final Object vouchers = new Object();
  static final java.util.concurrent.CyclicBarrier bothHoldOne = new java.util.concurrent.CyclicBarrier(2);

  public static void main(String[] args) throws Exception {
    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    server.setExecutor(r -> new Thread(r).start());
    server.createContext("/checkout", ex -> answer(ex, checkout(ex.getRequestURI().getQuery())));
    server.createContext("/browse", ex -> answer(ex, browse(ex.getRequestURI().getQuery())));
    server.createContext("/audit", ex -> answer(ex, String.valueOf(ex.getRequestHeaders().getFirst("tracestate"))));
    server.createContext("/refund", ex -> answer(ex, refund(ex.getRequestURI().getQuery())));
    server.start();
    port = server.getAddress().getPort();
    System.out.println("ready " + port);
    System.out.flush();
    while (System.in.read() >= 0) {
      // serve until stdin closes
    }
    server.stop(0);
    System.out.println("bye");
  }

  static void answer(HttpExchange ex, String text) throws IOException {
    byte[] body = text.getBytes(StandardCharsets.UTF_8);
    ex.sendResponseHeaders(200, body.length);
    try (OutputStream out = ex.getResponseBody()) {
      out.write(body);
    }
  }

  static String checkout(String query) {
    boolean ab = query != null && query.contains("order=ab");
    ReentrantLock first = ab ? stock : ledger;
    ReentrantLock second = ab ? ledger : stock;
    first.lock();
    try {
      second.lock();
      second.unlock();
    } finally {
      first.unlock();
    }
    Object outer = ab ? cart : payment;
    Object inner = ab ? payment : cart;
    synchronized (outer) {
      synchronized (inner) {
        outer.hashCode();
      }
    }
    if (query != null && query.contains("call=1")) return audit();
    return "paid";
  }

  static String browse(String query) {
    boolean ab = query != null && query.contains("order=ab");
    ReentrantLock first = ab ? shelf : aisle;
    ReentrantLock second = ab ? aisle : shelf;
    first.lock();
    try {
      second.lock();
      second.unlock();
    } finally {
      first.unlock();
    }
    Object outer = ab ? basket : wishlist;
    Object inner = ab ? wishlist : basket;
    synchronized (outer) {
      synchronized (inner) {
        outer.hashCode();
      }
    }
    return "looked";
  }

  static String audit() {
    try {
      HttpResponse<String> r =
          HttpClient.newHttpClient()
              .send(
                  HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/audit")).build(),
                  HttpResponse.BodyHandlers.ofString());
      return r.body();
    } catch (Exception e) {
      return "audit failed: " + e;
    }
  }

  static String refund(String query) {
    boolean a = query != null && query.contains("side=a");
    Object first = a ? refunds : vouchers;
    Object second = a ? vouchers : refunds;
    synchronized (first) {
      try {
        bothHoldOne.await();
      } catch (Exception e) {
        return "interrupted";
      }
      synchronized (second) {
        return "refunded";
      }
    }
  }
}
