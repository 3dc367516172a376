import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;

/** Calls a URL with the JDK's HttpClient, once blocking (send) and once asynchronously (sendAsync). */
public class HttpCall {
  public static void main(String[] args) throws Exception {
    HttpClient client = HttpClient.newHttpClient();
    HttpRequest req = HttpRequest.newBuilder(URI.create(args[0] + "?sku=42")).GET().build();
    HttpResponse<String> resp = client.send(req, HttpResponse.BodyHandlers.ofString());
    System.out.println("send " + resp.statusCode() + " " + resp.body());
    HttpResponse<String> again =
        client.sendAsync(HttpRequest.newBuilder(URI.create(args[0])).GET().build(), HttpResponse.BodyHandlers.ofString()).get();
    System.out.println("sendAsync " + again.statusCode());
  }
}
