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
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

/**
 * The cost of a hand-off: {@code java JavaHandOffCost N ROUNDS} times, in an HTTP handler (POST
 * /bench, which a boundary on POST /bench puts inside an instance; GET /bench the same work
 * outside), N tasks handed in a row (then waited for together) to a single-thread
 * ThreadPoolExecutor (execute), a ForkJoinPool(1) (submit), a ScheduledThreadPoolExecutor(1)
 * (schedule, 0 ms), and N/10 platform threads started and joined one at a time. Prints one line per
 * round and method: {@code where method ns_per_handoff}. The client is the JVM's own
 * HttpClient; the median of the rounds after the first is the figure.
 */
public class JavaHandOffCost {
  static final ExecutorService tpe = Executors.newSingleThreadExecutor();
  static final ForkJoinPool fj = new ForkJoinPool(1);
  static final ScheduledThreadPoolExecutor sched = new ScheduledThreadPoolExecutor(1);
  static volatile long sink;

  public static void main(String[] args) throws Exception {
    int n = Integer.parseInt(args[0]);
    int rounds = Integer.parseInt(args[1]);
    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    server.setExecutor(Executors.newSingleThreadExecutor());
    server.createContext("/bench", ex -> answer(ex, bench(n)));
    server.start();
    HttpClient client = HttpClient.newHttpClient();
    URI uri = URI.create("http://127.0.0.1:" + server.getAddress().getPort() + "/bench");
    for (int r = 0; r < rounds; r++) {
      for (String method : new String[] {"GET", "POST"}) {
        HttpRequest req = HttpRequest.newBuilder(uri).method(method, HttpRequest.BodyPublishers.noBody()).build();
        String body = client.send(req, HttpResponse.BodyHandlers.ofString()).body();
        for (String line : body.split("\n")) System.out.println(r + " " + (method.equals("POST") ? "inside" : "outside") + " " + line);
      }
    }
    server.stop(0);
    System.exit(0);
  }

  static void answer(HttpExchange ex, String text) throws IOException {
    byte[] body = text.getBytes(StandardCharsets.UTF_8);
    ex.sendResponseHeaders(200, body.length);
    try (OutputStream out = ex.getResponseBody()) {
      out.write(body);
    }
  }

  static String bench(int n) {
    List<String> out = new ArrayList<>();
    try {
      CountDownLatch done = new CountDownLatch(n);
      long t0 = System.nanoTime();
      for (int i = 0; i < n; i++) tpe.execute(done::countDown);
      done.await();
      out.add("tpe.execute " + (System.nanoTime() - t0) / n);
      CountDownLatch fjDone = new CountDownLatch(n);
      t0 = System.nanoTime();
      for (int i = 0; i < n; i++) fj.submit(fjDone::countDown);
      fjDone.await();
      out.add("fj.submit " + (System.nanoTime() - t0) / n);
      CountDownLatch sDone = new CountDownLatch(n);
      t0 = System.nanoTime();
      for (int i = 0; i < n; i++) sched.schedule(sDone::countDown, 0, TimeUnit.MILLISECONDS);
      sDone.await();
      out.add("stpe.schedule " + (System.nanoTime() - t0) / n);
      int m = Math.max(1, n / 10);
      t0 = System.nanoTime();
      for (int i = 0; i < m; i++) {
        Thread t = new Thread(() -> sink++);
        t.start();
        t.join();
      }
      out.add("thread.start " + (System.nanoTime() - t0) / m);
    } catch (Exception e) {
      out.add("failed " + e);
    }
    return String.join("\n", out);
  }
}
