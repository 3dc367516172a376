package dev.willowisp.agent;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** Every conformance vector encodes to exactly the bytes of its .wtrace file. */
class ConformanceTest {
  static final Path VECTORS = Paths.get("../../conformance/vectors").toAbsolutePath().normalize();

  static Stream<Path> vectors() throws IOException {
    List<Path> found = new ArrayList<>();
    try (Stream<Path> s = Files.list(VECTORS)) {
      s.filter(p -> p.toString().endsWith(".json")).sorted().forEach(found::add);
    }
    assertFalse(found.isEmpty(), "no vectors under " + VECTORS);
    return found.stream();
  }

  @ParameterizedTest
  @MethodSource("vectors")
  void vectorEncodesByteForByte(Path json) throws IOException {
    String text = Files.readString(json, StandardCharsets.US_ASCII);
    byte[] expected =
        Files.readAllBytes(Paths.get(json.toString().replaceAll("\\.json$", ".wtrace")));
    assertArrayEquals(expected, encode(text), json.getFileName().toString());
  }

  @SuppressWarnings("unchecked")
  static byte[] encode(String text) {
    Map<String, Object> vector = (Map<String, Object>) ExactJson.parse(text);
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    out.writeBytes(Wtrace.fileHeader());
    for (Object c : (List<Object>) vector.get("chunks")) {
      Map<String, Object> chunk = (Map<String, Object>) c;
      List<Wtrace.Record> records = new ArrayList<>();
      for (Object r : (List<Object>) chunk.get("records")) {
        Map<String, Object> rec = (Map<String, Object>) r;
        Wtrace.Record record =
            new Wtrace.Record(
                ((BigInteger) rec.get("type")).intValueExact(),
                ((BigInteger) rec.get("id")).longValue());
        for (Object a : (List<Object>) rec.get("attrs")) {
          List<Object> kv = (List<Object>) a;
          String key = (String) kv.get(0);
          Object v = kv.get(1);
          if (v instanceof BigInteger) {
            record.put(key, ((BigInteger) v).longValueExact());
          } else if (v instanceof String) {
            record.put(key, (String) v);
          } else {
            record.put(key, HexFormat.of().parseHex((String) ((Map<String, Object>) v).get("hex")));
          }
        }
        records.add(record);
      }
      Wtrace.Events events = null;
      Map<String, Object> ev = (Map<String, Object>) chunk.get("events");
      if (ev != null) {
        events = new Wtrace.Events(16);
        events.firstSeq = ((BigInteger) ev.get("first_seq")).longValue();
        for (Object row : (List<Object>) ev.get("rows")) {
          List<Object> f = (List<Object>) row;
          events.add(
              ((BigInteger) f.get(0)).intValueExact(),
              (int) ((BigInteger) f.get(1)).longValueExact(),
              ((BigInteger) f.get(2)).longValueExact(),
              (int) ((BigInteger) f.get(3)).longValueExact(),
              ((BigInteger) f.get(4)).longValueExact(),
              (int) ((BigInteger) f.get(5)).longValueExact());
        }
      }
      out.writeBytes(Wtrace.chunk(records, events, Wtrace.CODEC_NONE));
    }
    return out.toByteArray();
  }

  @org.junit.jupiter.api.Test
  void deflateChunkRoundTrips() throws Exception {
    List<Wtrace.Record> recs = new ArrayList<>();
    recs.add(new Wtrace.Record(Wtrace.R_UNIT, 1).put("kind", "thread").put("name", "main"));
    Wtrace.Events ev = new Wtrace.Events(4);
    ev.firstSeq = 1;
    for (int i = 0; i < 5000; i++) ev.add(10, 1, 1000L + i, 1, 0, 0);
    byte[] framed = Wtrace.chunk(recs, ev, Wtrace.CODEC_DEFLATE);
    assertEquals(Wtrace.CODEC_DEFLATE, framed[4]);
    byte[] raw = Wtrace.payload(recs, ev);
    java.util.zip.Inflater inf = new java.util.zip.Inflater();
    inf.setInput(framed, 20, framed.length - 20);
    byte[] back = new byte[raw.length];
    assertEquals(raw.length, inf.inflate(back));
    assertArrayEquals(raw, back);
  }
}
