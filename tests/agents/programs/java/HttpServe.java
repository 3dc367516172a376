import com.sun.net.httpserver.HttpServer;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;

/**
 * An inventory service on com.sun.net.httpserver: prints "ready PORT", serves until stdin
 * closes, prints "bye". With --once it first calls itself once through HttpClient.
 */
public class HttpServe {
  public static void main(String[] args) throws Exception {
    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    server.createContext(
        "/inventory",
        exchange -> {
          byte[] body = "12 left".getBytes(StandardCharsets.UTF_8);
          exchange.sendResponseHeaders(200, body.length);
          try (OutputStream out = exchange.getResponseBody()) {
            out.write(body);
          }
        });
    server.start();
    int port = server.getAddress().getPort();
    System.out.println("ready " + port);
    System.out.flush();
    if (args.length > 0 && args[0].equals("--once")) {
      HttpResponse<String> r =
          HttpClient.newHttpClient()
              .send(
                  HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/inventory")).build(),
                  HttpResponse.BodyHandlers.ofString());
      System.out.println(r.statusCode() + " " + r.body());
    }
    while (System.in.read() >= 0) {
      // serve until stdin closes
    }
    server.stop(0);
    System.out.println("bye");
  }
}
