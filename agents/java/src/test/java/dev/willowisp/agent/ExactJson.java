package dev.willowisp.agent;

import java.math.BigInteger;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A tiny JSON reader for the conformance vectors that keeps integers exact (as BigInteger):
 * vectors hold 64-bit values a double would round. Objects become LinkedHashMaps, arrays
 * Lists, strings Strings; a number with a fraction or exponent is refused.
 */
final class ExactJson {
  private final String s;
  private int pos;

  private ExactJson(String s) {
    this.s = s;
  }

  static Object parse(String text) {
    ExactJson p = new ExactJson(text);
    Object v = p.value();
    p.space();
    if (p.pos != text.length()) {
      throw p.fail("the end of the document");
    }
    return v;
  }

  private IllegalArgumentException fail(String what) {
    return new IllegalArgumentException("JSON: expected " + what + " at offset " + pos);
  }

  private void space() {
    while (pos < s.length() && " \t\r\n".indexOf(s.charAt(pos)) >= 0) pos++;
  }

  private void expect(char c) {
    space();
    if (pos >= s.length() || s.charAt(pos) != c) throw fail("'" + c + "'");
    pos++;
  }

  private boolean peek(char c) {
    space();
    return pos < s.length() && s.charAt(pos) == c;
  }

  private Object value() {
    space();
    if (pos >= s.length()) throw fail("a value");
    char c = s.charAt(pos);
    if (c == '{') {
      pos++;
      Map<String, Object> m = new LinkedHashMap<>();
      if (peek('}')) {
        pos++;
        return m;
      }
      do {
        space();
        String k = string();
        expect(':');
        m.put(k, value());
      } while (comma('}'));
      return m;
    }
    if (c == '[') {
      pos++;
      List<Object> a = new ArrayList<>();
      if (peek(']')) {
        pos++;
        return a;
      }
      do {
        a.add(value());
      } while (comma(']'));
      return a;
    }
    if (c == '"') return string();
    for (String w : new String[] {"null", "true", "false"}) {
      if (s.startsWith(w, pos)) {
        pos += w.length();
        return w.equals("null") ? null : Boolean.valueOf(w.equals("true"));
      }
    }
    int start = pos;
    if (s.charAt(pos) == '-') pos++;
    while (pos < s.length() && Character.isDigit(s.charAt(pos))) pos++;
    if (pos == start || (pos < s.length() && ".eE".indexOf(s.charAt(pos)) >= 0)) {
      throw fail("an integer");
    }
    return new BigInteger(s.substring(start, pos));
  }

  private boolean comma(char close) {
    space();
    if (pos < s.length() && s.charAt(pos) == ',') {
      pos++;
      return true;
    }
    expect(close);
    return false;
  }

  private String string() {
    if (pos >= s.length() || s.charAt(pos) != '"') throw fail("a string");
    pos++;
    StringBuilder b = new StringBuilder();
    while (true) {
      if (pos >= s.length()) throw fail("a closing quote");
      char c = s.charAt(pos++);
      if (c == '"') return b.toString();
      if (c != '\\') {
        b.append(c);
        continue;
      }
      char e = s.charAt(pos++);
      switch (e) {
        case 'n': b.append('\n'); break;
        case 't': b.append('\t'); break;
        case 'r': b.append('\r'); break;
        case 'b': b.append('\b'); break;
        case 'f': b.append('\f'); break;
        case 'u':
          b.append((char) Integer.parseInt(s.substring(pos, pos + 4), 16));
          pos += 4;
          break;
        default: b.append(e);
      }
    }
  }
}
