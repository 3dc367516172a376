// ledger: the demo shop's Java service (willowisp.demo.shop starts it). A
// com.sun.net.httpserver.HttpServer (a thread per request, hooked by the Java agent):
//
//   POST /settle?order=N  books the order's payment on the record account:42, declared to
//                         the agent with Willowisp.access (seeded bug: the risk engine, in
//                         Rust, writes the same record with nothing ordering the two)
//   POST /prices          records a new price from the pricing worker; it comes through
//                         the shop's edge gateway, which drops the trace header (seeded bug)
//
// Prints "PORT <n>" once it listens. SIGTERM ends it (the agent's shutdown hook flushes).
// Compiled against the agent's jar (its API class, dev.willowisp.agent.Willowisp); at run
// time -javaagent puts that jar on the class path.

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.willowisp.agent.Willowisp;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.Executors;

public final class Ledger {
    static final Map<String, Long> accounts = new HashMap<>();
    static final Map<String, String> prices = new HashMap<>();
    static String settle(String query) {
        // no lock here, and none in the risk engine: the seeded race on account:42
        long balance = accounts.getOrDefault("account:42", 0L) + 42;
        accounts.put("account:42", balance);
        Willowisp.access("api", "account:42", Willowisp.WRITE);
        return "settled " + query;
    }

    static String price(HttpExchange exchange) throws IOException {
        try (InputStream in = exchange.getRequestBody()) {
            String body = new String(in.readAllBytes(), StandardCharsets.UTF_8);
            synchronized (prices) {
                prices.put("sku-1", body);
            }
        }
        return "price recorded";
    }

    static void handle(HttpExchange exchange) throws IOException {
        String body;
        int status = 200;
        switch (exchange.getRequestURI().getPath()) {
            case "/settle" -> body = settle(String.valueOf(exchange.getRequestURI().getQuery()));
            case "/prices" -> body = price(exchange);
            default -> {
                status = 404;
                body = "";
            }
        }
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        exchange.sendResponseHeaders(status, bytes.length);
        try (OutputStream out = exchange.getResponseBody()) {
            out.write(bytes);
        }
    }

    public static void main(String[] args) throws IOException {
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/", Ledger::handle);
        server.setExecutor(Executors.newCachedThreadPool());
        server.start();
        System.out.println("PORT " + server.getAddress().getPort());
        System.out.flush();
    }
}
