package dev.willowisp.agent;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.CRC32;
import java.util.zip.Deflater;

/**
 * The {@code .wtrace} encoder (docs/format.md): file header, chunk framing, the chunk-local
 * string table, records and the six event columns.
 *
 * <p>It is written for the flusher thread, not the hot path: a chunk is built from a list of
 * {@link Record}s and an {@link Events} column set that the recorder filled, then framed with
 * its CRC-32 (of the uncompressed payload) and written with one {@code write}. The string
 * table lists each string once in order of first use (key, then value, record by record), the
 * one order the conformance vectors pin. Codecs: {@code none} and {@code deflate}
 * (zlib-wrapped, what {@link Deflater} writes); a payload that does not shrink is stored as
 * {@code none}.
 */
public final class Wtrace {
  public static final int MAJOR = 1;
  public static final int MINOR = 2;
  public static final int CODEC_NONE = 0;
  public static final int CODEC_DEFLATE = 1;
  public static final int MAX_CHUNK_BYTES = 64 * 1024 * 1024;

  public static final int R_PROCESS = 1;
  public static final int R_UNIT = 2;
  public static final int R_RESOURCE = 3;
  public static final int R_LOCATION = 4;
  public static final int R_FAULT = 5;
  public static final int R_STATS = 6;

  private Wtrace() {}

  /** One record: a type, an id and ordered attributes (values: Long, String or byte[]). */
  public static final class Record {
    public final int type;
    public final long id;
    final List<String> keys = new ArrayList<>();
    final List<Object> values = new ArrayList<>();

    public Record(int type, long id) {
      this.type = type;
      this.id = id;
    }

    public Record put(String key, long value) {
      keys.add(key);
      values.add(value);
      return this;
    }

    public Record put(String key, String value) {
      keys.add(key);
      values.add(value == null ? "" : value);
      return this;
    }

    public Record put(String key, byte[] value) {
      keys.add(key);
      values.add(value);
      return this;
    }

    /** The attribute's value, or null. */
    public Object get(String key) {
      int i = keys.indexOf(key);
      return i < 0 ? null : values.get(i);
    }
  }

  /** Event columns; {@code n} rows are used. Grows as needed (flusher side only). */
  public static final class Events {
    public long firstSeq;
    public int n;
    public byte[] kind;
    public int[] unit;
    public long[] time;
    public int[] res;
    public long[] arg;
    public int[] loc;

    public Events(int capacity) {
      allocate(Math.max(capacity, 16));
    }

    private void allocate(int cap) {
      kind = new byte[cap];
      unit = new int[cap];
      time = new long[cap];
      res = new int[cap];
      arg = new long[cap];
      loc = new int[cap];
    }

    public void add(int k, int u, long t, int r, long a, int l) {
      if (n == kind.length) {
        grow();
      }
      kind[n] = (byte) k;
      unit[n] = u;
      time[n] = t;
      res[n] = r;
      arg[n] = a;
      loc[n] = l;
      n++;
    }

    /** Appends ring slots [from, from + k) of every column. */
    void append(Ring r, int from, int k) {
      while (n + k > kind.length) grow();
      System.arraycopy(r.kind, from, kind, n, k);
      System.arraycopy(r.unit, from, unit, n, k);
      System.arraycopy(r.time, from, time, n, k);
      System.arraycopy(r.res, from, res, n, k);
      System.arraycopy(r.arg, from, arg, n, k);
      System.arraycopy(r.loc, from, loc, n, k);
      n += k;
    }

    private void grow() {
      byte[] k = kind;
      int[] u = unit;
      long[] t = time;
      int[] r = res;
      long[] a = arg;
      int[] l = loc;
      allocate(k.length * 2);
      System.arraycopy(k, 0, kind, 0, n);
      System.arraycopy(u, 0, unit, 0, n);
      System.arraycopy(t, 0, time, 0, n);
      System.arraycopy(r, 0, res, 0, n);
      System.arraycopy(a, 0, arg, 0, n);
      System.arraycopy(l, 0, loc, 0, n);
    }
  }

  /** The 16-byte file header. */
  public static byte[] fileHeader() {
    byte[] h = new byte[16];
    byte[] magic = "WTRACE".getBytes(StandardCharsets.US_ASCII);
    System.arraycopy(magic, 0, h, 0, 6);
    h[6] = MAJOR;
    h[7] = MINOR;
    return h;
  }

  /** A whole framed chunk (20-byte header and stored payload) with the given codec. */
  public static byte[] chunk(List<Record> records, Events events, int codec) {
    return chunk(records, null, events, codec);
  }

  /** A chunk whose records are {@code records}, then the virtual threads' units {@code v}. */
  public static byte[] chunk(List<Record> records, VUnits v, Events events, int codec) {
    Buf out = new Buf(256 + (events == null ? 0 : events.n * 29) + (v == null ? 0 : v.n * 32));
    out.len = 20; // the header, filled in by frameInPlace
    payloadInto(out, records, v, events);
    return frameInPlace(out, codec);
  }

  /**
   * Unit records of unnamed virtual threads in columns (unit, java_tid, parent): written
   * as the records {@code unitRecord} would make ({@code kind=virtual-thread},
   * {@code name=virtual-<tid>}, {@code parent}, {@code java_tid}) without an object, list
   * or string per thread. Flusher only.
   */
  public static final class VUnits {
    public int n;
    int[] unit = new int[64];
    long[] tid = new long[64];
    int[] parent = new int[64];

    public void add(int u, long t, int p) {
      if (n == unit.length) {
        unit = java.util.Arrays.copyOf(unit, n * 2);
        tid = java.util.Arrays.copyOf(tid, n * 2);
        parent = java.util.Arrays.copyOf(parent, n * 2);
      }
      unit[n] = u;
      tid[n] = t;
      parent[n] = p;
      n++;
    }

    public void addAll(VUnits o) {
      for (int i = 0; i < o.n; i++) add(o.unit[i], o.tid[i], o.parent[i]);
    }

    /** Keeps the last {@code max} (a bound on what refused chunks leave for later). */
    public void keepLast(int max) {
      if (n <= max) return;
      int from = n - max;
      System.arraycopy(unit, from, unit, 0, max);
      System.arraycopy(tid, from, tid, 0, max);
      System.arraycopy(parent, from, parent, 0, max);
      n = max;
    }
  }

  /** The uncompressed payload: string table, records, event columns. */
  public static byte[] payload(List<Record> records, Events events) {
    Buf out = new Buf(256 + (events == null ? 0 : events.n * 29));
    payloadInto(out, records, null, events);
    return out.toBytes();
  }

  /** Appends the payload to {@code out}: string table, records, event columns. */
  static void payloadInto(Buf out, List<Record> records, VUnits vu, Events events) {
    Map<String, Integer> strings = new HashMap<>();
    List<String> order = new ArrayList<>();
    int vn = vu == null ? 0 : vu.n;
    Buf body = new Buf(256 + vn * 12);
    body.uvarint(records.size() + vn);
    for (Record rec : records) {
      body.u8(rec.type);
      body.uvarint(rec.id);
      body.uvarint(rec.keys.size());
      for (int i = 0; i < rec.keys.size(); i++) {
        body.uvarint(stringIndex(strings, order, rec.keys.get(i)));
        Object v = rec.values.get(i);
        if (v instanceof Long) {
          body.u8(0);
          long x = (Long) v;
          body.uvarint((x << 1) ^ (x >> 63));
        } else if (v instanceof String) {
          body.u8(1);
          body.uvarint(stringIndex(strings, order, (String) v));
        } else {
          byte[] b = (byte[]) v;
          body.u8(2);
          body.uvarint(b.length);
          body.bytes(b, 0, b.length);
        }
      }
    }
    int base = 0;
    if (vn > 0) {
      int kKind = stringIndex(strings, order, "kind");
      int kName = stringIndex(strings, order, "name");
      int kParent = stringIndex(strings, order, "parent");
      int kTid = stringIndex(strings, order, "java_tid");
      int virtual = stringIndex(strings, order, "virtual-thread");
      base = order.size(); // the names follow the other strings, one each
      for (int i = 0; i < vn; i++) {
        body.u8(R_UNIT);
        body.uvarint(vu.unit[i]);
        body.uvarint(4);
        body.uvarint(kKind);
        body.u8(1);
        body.uvarint(virtual);
        body.uvarint(kName);
        body.u8(1);
        body.uvarint(base + i);
        long p = vu.parent[i];
        body.uvarint(kParent);
        body.u8(0);
        body.uvarint((p << 1) ^ (p >> 63));
        long t = vu.tid[i];
        body.uvarint(kTid);
        body.u8(0);
        body.uvarint((t << 1) ^ (t >> 63));
      }
    }
    out.uvarint(order.size() + vn);
    for (String s : order) {
      byte[] b = s.getBytes(StandardCharsets.UTF_8);
      out.uvarint(b.length);
      out.bytes(b, 0, b.length);
    }
    for (int i = 0; i < vn; i++) out.virtualName(vu.tid[i]);
    out.bytes(body.data, 0, body.len);
    int n = events == null ? 0 : events.n;
    out.uvarint(n);
    if (n > 0) {
      out.need(10 + 29 * n);
      out.uvarint(events.firstSeq);
      out.bytes(events.kind, 0, n);
      out.ints(events.unit, n);
      out.longs(events.time, n);
      out.ints(events.res, n);
      out.longs(events.arg, n);
      out.ints(events.loc, n);
    }
  }

  private static int stringIndex(Map<String, Integer> strings, List<String> order, String s) {
    Integer i = strings.get(s);
    if (i == null) {
      i = order.size();
      strings.put(s, i);
      order.add(s);
    }
    return i;
  }

  /**
   * The number of events in an encoded chunk (its header, string table and records
   * skipped); 0 when it cannot be read. For chunks refused after they were encoded.
   */
  public static long eventCount(byte[] chunk) {
    try {
      if (chunk.length < 20) return 0;
      int codec = chunk[4] & 0xff;
      int stored = (int) u32At(chunk, 8);
      int raw = (int) u32At(chunk, 12);
      byte[] p;
      if (codec == CODEC_DEFLATE) {
        java.util.zip.Inflater inf = new java.util.zip.Inflater();
        try {
          inf.setInput(chunk, 20, stored);
          p = new byte[raw];
          int got = 0;
          while (got < raw && !inf.finished()) {
            int k = inf.inflate(p, got, raw - got);
            if (k == 0 && (inf.needsInput() || inf.needsDictionary())) break;
            got += k;
          }
        } finally {
          inf.end();
        }
      } else {
        p = java.util.Arrays.copyOfRange(chunk, 20, 20 + raw);
      }
      int[] at = {0};
      long strings = uvarintAt(p, at);
      for (long i = 0; i < strings; i++) {
        int len = (int) uvarintAt(p, at);
        at[0] += len;
      }
      long records = uvarintAt(p, at);
      for (long i = 0; i < records; i++) {
        at[0]++; // type
        uvarintAt(p, at); // id
        long keys = uvarintAt(p, at);
        for (long k = 0; k < keys; k++) {
          uvarintAt(p, at);
          int tag = p[at[0]++] & 0xff;
          long v = uvarintAt(p, at);
          if (tag == 2) at[0] += (int) v;
        }
      }
      return uvarintAt(p, at);
    } catch (Throwable e) {
      return 0;
    }
  }

  private static long u32At(byte[] b, int i) {
    return (b[i] & 0xffL) | (b[i + 1] & 0xffL) << 8 | (b[i + 2] & 0xffL) << 16 | (b[i + 3] & 0xffL) << 24;
  }

  private static long uvarintAt(byte[] b, int[] at) {
    long x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      int c = b[at[0]++] & 0xff;
      x |= (long) (c & 0x7f) << shift;
      if (c < 0x80) return x;
    }
    return x;
  }

  /** Frames a payload; deflate falls back to none when it does not shrink the payload. */
  public static byte[] frame(byte[] payload, int codec) {
    Buf out = new Buf(20 + payload.length);
    out.len = 20;
    out.bytes(payload, 0, payload.length);
    return frameInPlace(out, codec);
  }

  /**
   * Frames the payload held in {@code buf} after 20 reserved bytes: with {@code none} the
   * header is written in place and the chunk is one copy of the buffer; with {@code
   * deflate} the payload is compressed (and stored as {@code none} when that does not
   * shrink it).
   */
  static byte[] frameInPlace(Buf buf, int codec) {
    int rawLen = buf.len - 20;
    if (rawLen > MAX_CHUNK_BYTES) {
      throw new IllegalArgumentException("chunk payload of " + rawLen + " bytes");
    }
    CRC32 crc = new CRC32();
    crc.update(buf.data, 20, rawLen);
    int crcValue = (int) crc.getValue();
    if (codec == CODEC_DEFLATE) {
      byte[] z = deflate(buf.data, 20, rawLen);
      if (z != null) {
        Buf out = new Buf(20 + z.length);
        header(out, CODEC_DEFLATE, z.length, rawLen, crcValue);
        out.bytes(z, 0, z.length);
        return out.data.length == out.len ? out.data : out.toBytes();
      }
    }
    int end = buf.len;
    buf.len = 0;
    header(buf, CODEC_NONE, rawLen, rawLen, crcValue);
    buf.len = end;
    return buf.toBytes();
  }

  private static void header(Buf out, int codec, int storedLen, int rawLen, int crc) {
    out.bytes(CHUNK_MAGIC, 0, 4);
    out.u8(codec);
    out.u8(0);
    out.u8(0);
    out.u8(0);
    out.u32(storedLen);
    out.u32(rawLen);
    out.u32(crc);
  }

  private static final byte[] CHUNK_MAGIC = {'W', 'C', 'H', 'K'};

  /**
   * The flusher's deflater, kept between chunks (a new one costs a zlib state of ~256 KiB to
   * set up and clear); flusher thread only.
   */
  private static final ThreadLocal<Deflater> DEFLATER = ThreadLocal.withInitial(() -> new Deflater(Deflater.BEST_SPEED));

  /** The deflated bytes, or null when they would not be smaller. */
  private static byte[] deflate(byte[] data, int off, int len) {
    Deflater d = DEFLATER.get();
    d.reset();
    d.setInput(data, off, len);
    d.finish();
    byte[] buf = new byte[len];
    int n = 0;
    while (!d.finished() && n < buf.length) n += d.deflate(buf, n, buf.length - n);
    if (!d.finished() || n >= len) return null; // did not fit: not smaller
    byte[] out = new byte[n];
    System.arraycopy(buf, 0, out, 0, n);
    return out;
  }

  /** A growable little-endian byte buffer with LEB128 varints. */
  static final class Buf {
    byte[] data;
    int len;

    Buf(int cap) {
      data = new byte[Math.max(cap, 16)];
    }

    void need(int k) {
      if (len + k > data.length) {
        byte[] d = new byte[Math.max(data.length * 2, len + k)];
        System.arraycopy(data, 0, d, 0, len);
        data = d;
      }
    }

    void u8(int v) {
      need(1);
      data[len++] = (byte) v;
    }

    /** Unsigned LEB128 of the 64 bits of v (values up to 2^64 - 1 as a long's bits). */
    void uvarint(long v) {
      need(10);
      while ((v & ~0x7FL) != 0) {
        data[len++] = (byte) ((v & 0x7F) | 0x80);
        v >>>= 7;
      }
      data[len++] = (byte) v;
    }

    /** The string {@code virtual-<tid>} (ASCII) with its length, without a String. */
    void virtualName(long tid) {
      int digits = 1;
      for (long x = tid; x >= 10; x /= 10) digits++;
      uvarint(8 + digits);
      need(8 + digits);
      for (int i = 0; i < 8; i++) data[len++] = (byte) "virtual-".charAt(i);
      for (int i = digits - 1; i >= 0; i--) {
        data[len + i] = (byte) ('0' + tid % 10);
        tid /= 10;
      }
      len += digits;
    }

    void u32(int v) {
      need(4);
      data[len++] = (byte) v;
      data[len++] = (byte) (v >>> 8);
      data[len++] = (byte) (v >>> 16);
      data[len++] = (byte) (v >>> 24);
    }

    void u64(long v) {
      need(8);
      for (int i = 0; i < 8; i++) {
        data[len++] = (byte) (v >>> (8 * i));
      }
    }

    /** n ints as u32 LE, in bulk (a view buffer copy, not a loop of byte stores). */
    void ints(int[] a, int n) {
      need(4 * n);
      ByteBuffer.wrap(data, len, 4 * n).order(ByteOrder.LITTLE_ENDIAN).asIntBuffer().put(a, 0, n);
      len += 4 * n;
    }

    /** n longs as u64 LE, in bulk. */
    void longs(long[] a, int n) {
      need(8 * n);
      ByteBuffer.wrap(data, len, 8 * n).order(ByteOrder.LITTLE_ENDIAN).asLongBuffer().put(a, 0, n);
      len += 8 * n;
    }

    void bytes(byte[] b, int off, int n) {
      need(n);
      System.arraycopy(b, off, data, len, n);
      len += n;
    }

    byte[] toBytes() {
      byte[] out = new byte[len];
      System.arraycopy(data, 0, out, 0, len);
      return out;
    }
  }
}
