package dev.willowisp.agent;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The JSON of the live protocols and boundary specs: the parts the control channel relies on. */
class ChannelPartsTest {
  static Object parse(String s) throws Json.BadJson {
    return Json.parse(s.getBytes(StandardCharsets.UTF_8));
  }

  @Test
  void jsonParsesWhatTheProtocolsSendAndWritesItBack() throws Exception {
    Object v = parse(" {\"op\":\"hello\",\"versions\":[1, 2],\"id\":-7,\"x\":1.5e2,\"s\":\"a\\u00e9\\n\\\"\"} ");
    Map<?, ?> m = (Map<?, ?>) v;
    assertEquals("hello", m.get("op"));
    assertEquals(List.of(1L, 2L), m.get("versions"));
    assertEquals(-7L, m.get("id"));
    assertEquals(150.0, m.get("x"));
    assertEquals("a\u00e9\n\"", m.get("s"));
    assertEquals(new BigInteger("123456789012345678901234567890"), parse("123456789012345678901234567890"));
    assertEquals("{\"a\":[1,true,null,\"\\u0001\"]}", Json.write(parse("{\"a\":[1,true,null,\"\\u0001\"]}")));
  }

  @Test
  void jsonRefusesWhatIsNotJson() {
    for (String bad :
        new String[] {"", "NaN", "{\"a\":NaN}", "{", "[1,]", "{\"a\" 1}", "01", "1.", "\"\\ud800\"", "{} x", "tru"}) {
      assertThrows(Json.BadJson.class, () -> parse(bad), bad);
    }
    assertThrows(Json.BadJson.class, () -> parse("[".repeat(50_000)));
    assertThrows(Json.BadJson.class, () -> Json.parse(new byte[] {'"', (byte) 0xff, '"'}));
  }

  @Test
  void boundarySpecsParseMatchAndRefuseAsThePythonModelDoes() throws Exception {
    Boundaries.Boundary b = Boundaries.parse("entry=http:POST /orders/*;runtimes=java,python", "test");
    assertEquals("http:POST /orders/*", b.entry);
    assertEquals(Boundaries.sha256Prefix("http:POST /orders/*"), b.id);
    assertEquals(8, b.id.length());
    assertTrue(b.matches("http", "post", "/orders/42?x="));
    assertFalse(b.matches("http", "GET", "/orders/42"));
    assertFalse(b.matches("http", "POST", "/carts/1"));
    assertTrue(b.allows("java"));
    assertFalse(b.allows("go"));
    assertTrue(Boundaries.parse("entry=http:/pay", "t").matches("http", "PUT", "/pay"));
    for (String bad : new String[] {"entry=http", "runtimes=java", "entry=http:/a;entry=http:/b", "x=1;entry=http:/a",
        "entry=http:/a;runtimes=cobol", "entry=http:/a;exit=reply"}) {
      assertThrows(Boundaries.BadSpec.class, () -> Boundaries.parse(bad, "t"), bad);
    }
  }

  @Test
  void tracestateCarriesTheBoundaryMemberFirst() {
    assertEquals("wisp=b-1234abcd", Boundaries.withMember(null, "b-1234abcd"));
    assertEquals("wisp=b-1234abcd,rojo=00f067aa", Boundaries.withMember("wisp=b-0,rojo=00f067aa", "b-1234abcd"));
    assertEquals("b-1234abcd", Boundaries.memberOf("rojo=1, wisp=b-1234abcd"));
    assertEquals("", Boundaries.memberOf("rojo=1"));
  }
}
