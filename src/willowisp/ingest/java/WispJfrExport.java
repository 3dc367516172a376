import java.io.BufferedWriter;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
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
        try (RecordingFile f = new RecordingFile(Path.of(args[0]))) {
            read(f, wanted, sink, out);
        } catch (Exception e) {
            System.err.println("wisp-jfr-export: " + e);
            System.exit(1);
        }
    }

    static void read(RecordingFile f, Set<String> wanted, Writer sink, StringBuilder out)
            throws Exception {
        boolean first = true;
        while (f.hasMoreEvents()) {
            RecordedEvent e = f.readEvent();
            String type = e.getEventType().getName();
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
        out.append("\n]}}\n");
        sink.append(out);
        sink.flush();
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
