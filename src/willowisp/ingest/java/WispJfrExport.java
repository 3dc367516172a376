import java.io.BufferedWriter;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import jdk.jfr.EventType;
import jdk.jfr.ValueDescriptor;
import jdk.jfr.consumer.RecordedClass;
import jdk.jfr.consumer.RecordedEvent;
import jdk.jfr.consumer.RecordedFrame;
import jdk.jfr.consumer.RecordedMethod;
import jdk.jfr.consumer.RecordedObject;
import jdk.jfr.consumer.RecordedStackTrace;
import jdk.jfr.consumer.RecordedThread;
import jdk.jfr.consumer.RecordingFile;

public class WispJfrExport {
    static final String[] JDK = {"java.", "javax.", "jdk.", "sun.", "com.sun."};
    static int depth;

    public static void main(String[] args) throws Exception {
        Set<String> wanted = new HashSet<>(List.of(args[1].split(",")));
        depth = Integer.parseInt(args[2]);
        Writer sink = new BufferedWriter(
                new OutputStreamWriter(System.out, StandardCharsets.UTF_8), 1 << 20);
        StringBuilder out = new StringBuilder(1 << 16);
        out.append("{\"recording\": {\"events\": [");
        Map<Long, String> names = new HashMap<>();
        try (RecordingFile f = new RecordingFile(Path.of(args[0]))) {
            for (EventType t : f.readEventTypes()) {
                names.put(t.getId(), t.getName());
            }
        } catch (IOException | RuntimeException e) {
            fail(e);
        }
        try (RecordingFile f = new RecordingFile(Path.of(args[0]))) {
            read(f, wanted, names, sink, out);
        } catch (IOException | RuntimeException e) {
            fail(e);
        }
    }

    // The importer shows this line to the user: an IOException's message is written for
    // people; anything else (an index out of bounds deep in the parser) means the bytes do
    // not parse, and the exception's own text would only confuse.
    static void fail(Exception e) {
        String why = e instanceof IOException && e.getMessage() != null
                ? e.getMessage() : "its data does not parse as JFR (damaged)";
        System.err.println(why);
        System.exit(1);
    }

    static void read(RecordingFile f, Set<String> wanted, Map<Long, String> names, Writer sink,
            StringBuilder out) throws IOException {
        boolean first = true;
        // whether each wanted event type was enabled, as the recording's last
        // jdk.ActiveSetting says: the importer tells "not recorded" from "did not happen"
        Map<String, Boolean> enabled = new TreeMap<>();
        while (f.hasMoreEvents()) {
            RecordedEvent e = f.readEvent();
            String type = e.getEventType().getName();
            if (type.equals("jdk.ActiveSetting")) {
                setting(e, wanted, names, enabled);
                continue;
            }
            if (!wanted.contains(type)) {
                continue;
            }
            out.append(first ? "\n{\"type\": " : ",\n{\"type\": ");
            first = false;
            str(out, type);
            out.append(", \"values\": ");
            object(out, e);
            out.append("}");
            if (out.length() > 1 << 16) {
                sink.append(out);
                out.setLength(0);
            }
        }
        out.append("\n], \"enabled\": {");
        boolean firstSetting = true;
        for (Map.Entry<String, Boolean> s : enabled.entrySet()) {
            out.append(firstSetting ? "" : ", ");
            firstSetting = false;
            str(out, s.getKey());
            out.append(": ").append(s.getValue());
        }
        out.append("}}}\n");
        sink.append(out);
        sink.flush();
    }

    static void setting(RecordedEvent e, Set<String> wanted, Map<Long, String> names,
            Map<String, Boolean> enabled) {
        if (!e.hasField("id") || !e.hasField("name") || !e.hasField("value")) {
            return;
        }
        String type = names.get(e.getLong("id"));
        if (type != null && wanted.contains(type) && "enabled".equals(e.getString("name"))) {
            enabled.put(type, "true".equals(e.getString("value")));
        }
    }

    static void object(StringBuilder out, RecordedObject o) {
        out.append('{');
        boolean first = true;
        for (ValueDescriptor d : o.getFields()) {
            String name = d.getName();
            if (!first) {
                out.append(", ");
            }
            first = false;
            str(out, name);
            out.append(": ");
            value(out, o, d, name);
        }
        out.append('}');
    }

    static void value(StringBuilder out, RecordedObject o, ValueDescriptor d, String name) {
        String content = d.getContentType();
        try {
            if ("jdk.jfr.Timestamp".equals(content)) {
                str(out, o.getInstant(name).toString());
                return;
            }
            if ("jdk.jfr.Timespan".equals(content)) {
                str(out, o.getDuration(name).toString());
                return;
            }
        } catch (RuntimeException ex) {
            out.append("null");
            return;
        }
        Object v = o.getValue(name);
        if (v instanceof RecordedThread t) {
            thread(out, t);
        } else if (v instanceof RecordedClass c) {
            out.append("{\"name\": ");
            str(out, c.getName());
            out.append('}');
        } else if (v instanceof RecordedStackTrace st) {
            stack(out, st);
        } else if (v instanceof String s) {
            str(out, s);
        } else if (v instanceof Boolean || v instanceof Long || v instanceof Integer
                || v instanceof Short || v instanceof Byte) {
            out.append(v.toString());
        } else if (v instanceof Number n && Double.isFinite(n.doubleValue())) {
            out.append(v.toString());
        } else if (v instanceof Character c) {
            str(out, c.toString());
        } else {
            out.append("null");
        }
    }

    static void thread(StringBuilder out, RecordedThread t) {
        // osName is left out where it repeats javaName, virtual where it is false: a
        // thread is written twice per event, so this is a fifth of the output
        out.append("{\"javaName\": ");
        str(out, t.getJavaName());
        out.append(", \"javaThreadId\": ").append(t.getJavaThreadId());
        out.append(", \"osThreadId\": ").append(t.getOSThreadId());
        if (t.getOSName() != null && !t.getOSName().equals(t.getJavaName())) {
            out.append(", \"osName\": ");
            str(out, t.getOSName());
        }
        if (t.hasField("virtual") && t.getBoolean("virtual")) {
            out.append(", \"virtual\": true");
        }
        out.append('}');
    }

    static void stack(StringBuilder out, RecordedStackTrace st) {
        out.append("{\"truncated\": " + st.isTruncated() + ", \"frames\": [");
        int n = 0;
        for (RecordedFrame f : st.getFrames()) {
            if (n == depth) {
                break;
            }
            RecordedMethod m = f.getMethod();
            String cls = m.getType().getName();
            if (n++ > 0) {
                out.append(", ");
            }
            out.append("{\"method\": {\"type\": {\"name\": ");
            str(out, cls);
            out.append("}, \"name\": ");
            str(out, m.getName());
            out.append(m.isHidden() ? ", \"hidden\": true}" : "}").append(", \"lineNumber\": ");
            out.append(f.getLineNumber()).append('}');
            if (f.getLineNumber() >= 0 && !m.isHidden() && !jdk(cls)) {
                break;
            }
        }
        out.append("]}");
    }

    static boolean jdk(String cls) {
        for (String p : JDK) {
            if (cls.startsWith(p)) {
                return true;
            }
        }
        return false;
    }

    static void str(StringBuilder out, String s) {
        if (s == null) {
            out.append("null");
            return;
        }
        out.append('"');
        boolean plain = true;
        for (int i = 0; i < s.length() && plain; i++) {
            char c = s.charAt(i);
            plain = c >= 0x20 && c != '"' && c != '\\';
        }
        if (plain) {
            out.append(s).append('"');
            return;
        }
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') {
                out.append('\\');
                out.append(c);
            } else if (c < 0x20) {
                out.append(String.format("\\u%04x", (int) c));
            } else {
                out.append(c);
            }
        }
        out.append('"');
    }
}
