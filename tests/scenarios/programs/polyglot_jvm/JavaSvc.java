// The Java service of the JVM polyglot scenario (orchestrator.py starts it with the Rust
// service's port). A com.sun.net.httpserver.HttpServer (a thread per request) whose paths
// call the Rust service with java.net.http.HttpClient (both hooked by the agent); /a and
// /b share one monitor, `inventory`:
//
//   /work  call Rust /step, answer `java:<answer>` (healthy path)
//   /b     synchronized (inventory): print "java-b-holding", call Rust /c (deadlock's holder;
//          if that call fails, at the end of the scenario, it stays holding inventory)
//   /a     print "java-a-waiting", then synchronized (inventory) (deadlock's waiter)
//
// It prints "PORT <n>" once it listens; the other stdout lines are the orchestrator's
// signals. SIGTERM ends it (the agent's shutdown hook flushes the recording).

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
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;

public final class JavaSvc {
    static final Object inventory = new Object();
    static final HttpClient client = HttpClient.newHttpClient();
    static int rustPort;

    static String callRust(String path) throws IOException, InterruptedException {
        HttpRequest request =
                HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + rustPort + path)).build();
        return client.send(request, HttpResponse.BodyHandlers.ofString()).body();
    }

    static void signal(String line) {
        System.out.println(line);
        System.out.flush();
    }

    static String work() throws IOException, InterruptedException {
        return "java:" + callRust("/step");
    }

    static String holder() throws IOException, InterruptedException {
        synchronized (inventory) { // held across the call to /c
            signal("java-b-holding");
            try {
                return "java:" + callRust("/c");
            } catch (IOException e) {
                new CountDownLatch(1).await(); // the call failed at the end: stay holding
                throw e;
            }
        }
    }

    static String waiter() {
        signal("java-a-waiting");
        synchronized (inventory) {
            return "java:a";
        }
    }

    static void handle(HttpExchange exchange) throws IOException {
        String body;
        int status = 200;
        try {
            switch (exchange.getRequestURI().getPath()) {
                case "/work" -> body = work();
                case "/b" -> body = holder();
                case "/a" -> body = waiter();
                default -> {
                    status = 404;
                    body = "";
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            status = 502;
            body = e.toString();
        } catch (IOException e) {
            status = 502;
            body = e.toString();
        }
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        exchange.sendResponseHeaders(status, bytes.length);
        try (OutputStream out = exchange.getResponseBody()) {
            out.write(bytes);
        }
    }

    public static void main(String[] args) throws IOException {
        rustPort = Integer.parseInt(args[0]);
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/", JavaSvc::handle);
        server.setExecutor(Executors.newCachedThreadPool());
        server.start();
        signal("PORT " + server.getAddress().getPort());
    }
}
