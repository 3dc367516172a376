import com.sun.net.httpserver.HttpServer;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

/**
 * The Java half of a deadlock across two runtimes. The "settle" thread holds the books
 * monitor and, when told "go PORT" on stdin, calls the Python service's /credit (which
 * needs a Python lock). The /reserve handler needs the books monitor. Prints "ready PORT"
 * when serving and "holding" once settle holds the monitor.
 */
public class CrossDeadlock {
  static final Object books = new Object();

  public static void main(String[] args) throws Exception {
    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    server.setExecutor(java.util.concurrent.Executors.newCachedThreadPool());
    server.createContext(
        "/reserve",
        exchange -> {
          synchronized (books) {
            exchange.sendResponseHeaders(200, -1);
            exchange.close();
          }
        });
    server.start();
    System.out.println("ready " + server.getAddress().getPort());
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
    Thread settle = new Thread(() -> settle(in), "settle");
    settle.start();
    settle.join();
  }

  static void settle(BufferedReader in) {
    synchronized (books) {
      System.out.println("holding");
      System.out.flush();
      try {
        String go = in.readLine();
        String port = go.split(" ")[1];
        HttpClient.newHttpClient()
            .send(
                HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/credit")).build(),
                HttpResponse.BodyHandlers.discarding());
      } catch (Exception e) {
        throw new RuntimeException(e);
      }
    }
  }
}
