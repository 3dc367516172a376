package dev.willowisp.agent;

import com.sun.net.httpserver.Headers;
import com.sun.net.httpserver.HttpExchange;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import net.bytebuddy.asm.Advice;

/**
 * Advice for the JDK's HTTP client and server. Its code is inlined into classes of
 * {@code java.net.http} and {@code jdk.httpserver} (platform class loader), so it may use
 * their types; it hands plain values to {@link HttpHooks} on the bootstrap path. These
 * classes are never loaded themselves: Byte Buddy reads their bytes (see {@link Instrument}).
 */
final class HttpAdvice {
  private HttpAdvice() {}

  /** {@code HttpClientImpl.send(request, handler)}. */
  static final class ClientSend {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter() {
      HttpHooks.clientSendEnter();
    }

    @Advice.OnMethodExit(onThrowable = Throwable.class, suppress = Throwable.class)
    static void exit(@Advice.Return Object response, @Advice.Thrown Throwable thrown) {
      HttpHooks.clientSendExit(
          thrown == null && response instanceof HttpResponse ? ((HttpResponse<?>) response).statusCode() : -1);
    }
  }

  /** {@code HttpClientImpl.sendAsync(request, handler, pushHandler, executor)}. */
  static final class ClientSendAsync {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter(@Advice.Argument(value = 0, readOnly = false) HttpRequest request) {
      URI uri = request.uri();
      String inject =
          HttpHooks.clientRequest(
              request.headers().firstValue("traceparent").orElse(null),
              request.method(),
              uri.getScheme(),
              uri.getHost(),
              uri.getPort(),
              uri.getRawPath(),
              uri.getRawQuery());
      String state = HttpHooks.clientTracestate(request.headers().firstValue("tracestate").orElse(null));
      if (inject != null || state != null) {
        HttpRequest.Builder b = HttpRequest.newBuilder(request, HttpHooks.ALL);
        if (inject != null) b.header("traceparent", inject);
        if (state != null) b.setHeader("tracestate", state);
        request = b.build();
      }
    }

    @Advice.OnMethodExit(onThrowable = Throwable.class, suppress = Throwable.class)
    static void exit(@Advice.Return Object future) {
      HttpHooks.clientAsyncResult(future);
    }
  }

  /** {@code com.sun.net.httpserver.Filter.Chain.doFilter(exchange)}. */
  static final class ServerChain {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter(@Advice.Argument(0) HttpExchange exchange) {
      if (HttpHooks.serverDepth()) {
        Headers h = exchange.getRequestHeaders();
        String[] values = new String[HttpHooks.HEADERS.length];
        for (int i = 0; i < values.length; i++) values[i] = h.getFirst(HttpHooks.HEADERS[i]);
        URI uri = exchange.getRequestURI();
        InetSocketAddress remote = exchange.getRemoteAddress();
        HttpHooks.serverEnter(
            exchange.getRequestMethod(),
            uri.getRawPath(),
            uri.getRawQuery(),
            remote == null ? "" : remote.getAddress().getHostAddress(),
            remote == null ? 0 : remote.getPort(),
            values);
      }
    }

    @Advice.OnMethodExit(onThrowable = Throwable.class, suppress = Throwable.class)
    static void exit() {
      HttpHooks.serverExit();
    }
  }

  /** {@code sun.net.httpserver.ExchangeImpl.sendResponseHeaders(code, length)}. */
  static final class ServerReply {
    @Advice.OnMethodEnter(suppress = Throwable.class)
    static void enter(@Advice.Argument(0) int code) {
      HttpHooks.serverReply(code);
    }
  }
}
