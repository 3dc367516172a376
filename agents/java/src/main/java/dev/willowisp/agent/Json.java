package dev.willowisp.agent;

import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The little JSON the agent speaks: quoting for JSON-valued attributes, a strict parser for
 * the control channel's and the native stream's frames, and a compact writer.
 *
 * <p>The parser is RFC 8259 and nothing more: UTF-8 input (malformed bytes are refused),
 * no {@code NaN}/{@code Infinity}, no trailing garbage, nesting at most {@link #MAX_DEPTH}
 * deep (deeper input is refused rather than risking the stack). Objects become ordered
 * maps (a repeated key: the last one wins), arrays lists, integers {@code Long} (or
 * {@code BigInteger} beyond 64 bits), other numbers {@code Double}. A lone surrogate in an
 * escape is refused: the value could not be written back as UTF-8.
 */
final class Json {
  static final int MAX_DEPTH = 64;

  private Json() {}

  /** Malformed JSON; the message says where. */
  static final class BadJson extends Exception {
    BadJson(String message) {
      super(message, null, false, false);
    }
  }

  static String quote(String s) {
    StringBuilder b = new StringBuilder(s.length() + 2);
    quoteInto(b, s);
    return b.toString();
  }

  private static void quoteInto(StringBuilder b, String s) {
    b.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '"' || c == '\\') b.append('\\').append(c);
      else if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || Character.isSurrogate(c)) {
        b.append(String.format("\\u%04x", (int) c));
      } else {
        b.append(c);
      }
    }
    b.append('"');
  }

  // --- writing ----------------------------------------------------------------------

  /** Compact JSON for maps, lists, strings, numbers, booleans and null. */
  static String write(Object v) {
    StringBuilder b = new StringBuilder();
    writeInto(b, v);
    return b.toString();
  }

  private static void writeInto(StringBuilder b, Object v) {
    if (v == null) {
      b.append("null");
    } else if (v instanceof String) {
      quoteInto(b, (String) v);
    } else if (v instanceof Boolean || v instanceof Long || v instanceof Integer || v instanceof BigInteger) {
      b.append(v);
    } else if (v instanceof Number) {
      double d = ((Number) v).doubleValue();
      b.append(Double.isFinite(d) ? Double.toString(d) : "null");
    } else if (v instanceof Map) {
      b.append('{');
      boolean first = true;
      for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
        if (!first) b.append(',');
        first = false;
        quoteInto(b, String.valueOf(e.getKey()));
        b.append(':');
        writeInto(b, e.getValue());
      }
      b.append('}');
    } else if (v instanceof List) {
      b.append('[');
      boolean first = true;
      for (Object x : (List<?>) v) {
        if (!first) b.append(',');
        first = false;
        writeInto(b, x);
      }
      b.append(']');
    } else {
      quoteInto(b, String.valueOf(v));
    }
  }

  // --- parsing ----------------------------------------------------------------------

  /** Parses UTF-8 bytes holding one JSON value. */
  static Object parse(byte[] body) throws BadJson {
    String s;
    try {
      s =
          StandardCharsets.UTF_8
              .newDecoder()
              .onMalformedInput(CodingErrorAction.REPORT)
              .onUnmappableCharacter(CodingErrorAction.REPORT)
              .decode(ByteBuffer.wrap(body))
              .toString();
    } catch (CharacterCodingException e) {
      throw new BadJson("body is not UTF-8");
    }
    Parser p = new Parser(s);
    p.ws();
    Object v = p.value(0);
    p.ws();
    if (p.i != s.length()) throw p.bad("trailing data");
    return v;
  }

  private static final class Parser {
    final String s;
    int i;

    Parser(String s) {
      this.s = s;
    }

    BadJson bad(String what) {
      return new BadJson(what + " at character " + i);
    }

    void ws() {
      while (i < s.length()) {
        char c = s.charAt(i);
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
        i++;
      }
    }

    Object value(int depth) throws BadJson {
      if (depth > MAX_DEPTH) throw bad("nested deeper than " + MAX_DEPTH);
      if (i >= s.length()) throw bad("unexpected end");
      char c = s.charAt(i);
      switch (c) {
        case '{':
          return object(depth);
        case '[':
          return array(depth);
        case '"':
          return string();
        case 't':
          return literal("true", Boolean.TRUE);
        case 'f':
          return literal("false", Boolean.FALSE);
        case 'n':
          return literal("null", null);
        default:
          if (c == '-' || (c >= '0' && c <= '9')) return number();
          throw bad("unexpected character");
      }
    }

    Object literal(String word, Object v) throws BadJson {
      if (!s.startsWith(word, i)) throw bad("not JSON");
      i += word.length();
      return v;
    }

    Map<String, Object> object(int depth) throws BadJson {
      Map<String, Object> m = new LinkedHashMap<>();
      i++;
      ws();
      if (i < s.length() && s.charAt(i) == '}') {
        i++;
        return m;
      }
      while (true) {
        ws();
        if (i >= s.length() || s.charAt(i) != '"') throw bad("expected a key");
        String k = string();
        ws();
        if (i >= s.length() || s.charAt(i) != ':') throw bad("expected ':'");
        i++;
        ws();
        m.put(k, value(depth + 1));
        ws();
        if (i >= s.length()) throw bad("unexpected end");
        char c = s.charAt(i++);
        if (c == '}') return m;
        if (c != ',') throw bad("expected ',' or '}'");
      }
    }

    List<Object> array(int depth) throws BadJson {
      List<Object> a = new ArrayList<>();
      i++;
      ws();
      if (i < s.length() && s.charAt(i) == ']') {
        i++;
        return a;
      }
      while (true) {
        ws();
        a.add(value(depth + 1));
        ws();
        if (i >= s.length()) throw bad("unexpected end");
        char c = s.charAt(i++);
        if (c == ']') return a;
        if (c != ',') throw bad("expected ',' or ']'");
      }
    }

    String string() throws BadJson {
      i++; // the opening quote
      StringBuilder b = new StringBuilder();
      while (true) {
        if (i >= s.length()) throw bad("unterminated string");
        char c = s.charAt(i++);
        if (c == '"') break;
        if (c < 0x20) throw bad("control character in a string");
        if (c != '\\') {
          b.append(c);
          continue;
        }
        if (i >= s.length()) throw bad("unterminated escape");
        char e = s.charAt(i++);
        switch (e) {
          case '"': case '\\': case '/': b.append(e); break;
          case 'b': b.append('\b'); break;
          case 'f': b.append('\f'); break;
          case 'n': b.append('\n'); break;
          case 'r': b.append('\r'); break;
          case 't': b.append('\t'); break;
          case 'u': b.append(hex4()); break;
          default: throw bad("bad escape");
        }
      }
      String out = b.toString();
      for (int k = 0; k < out.length(); k++) {
        char c = out.charAt(k);
        if (Character.isHighSurrogate(c) && k + 1 < out.length() && Character.isLowSurrogate(out.charAt(k + 1))) {
          k++;
        } else if (Character.isSurrogate(c)) {
          throw bad("lone surrogate in a string");
        }
      }
      return out;
    }

    char hex4() throws BadJson {
      if (i + 4 > s.length()) throw bad("short \\u escape");
      int v = 0;
      for (int k = 0; k < 4; k++) {
        int d = Character.digit(s.charAt(i + k), 16);
        if (d < 0) throw bad("bad \\u escape");
        v = v * 16 + d;
      }
      i += 4;
      return (char) v;
    }

    Object number() throws BadJson {
      int start = i;
      if (s.charAt(i) == '-') i++;
      if (i >= s.length()) throw bad("bad number");
      if (s.charAt(i) == '0') {
        i++;
      } else if (s.charAt(i) >= '1' && s.charAt(i) <= '9') {
        while (i < s.length() && Character.isDigit(s.charAt(i)) && s.charAt(i) < 128) i++;
      } else {
        throw bad("bad number");
      }
      boolean integral = true;
      if (i < s.length() && s.charAt(i) == '.') {
        integral = false;
        i++;
        int d = i;
        while (i < s.length() && s.charAt(i) >= '0' && s.charAt(i) <= '9') i++;
        if (i == d) throw bad("bad fraction");
      }
      if (i < s.length() && (s.charAt(i) == 'e' || s.charAt(i) == 'E')) {
        integral = false;
        i++;
        if (i < s.length() && (s.charAt(i) == '+' || s.charAt(i) == '-')) i++;
        int d = i;
        while (i < s.length() && s.charAt(i) >= '0' && s.charAt(i) <= '9') i++;
        if (i == d) throw bad("bad exponent");
      }
      String text = s.substring(start, i);
      if (!integral) return Double.parseDouble(text);
      if (text.length() <= 18) return Long.parseLong(text);
      return new BigInteger(text);
    }
  }
}
