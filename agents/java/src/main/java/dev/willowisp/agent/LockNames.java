package dev.willowisp.agent;

import java.lang.reflect.Field;
import java.lang.reflect.Modifier;

/**
 * A lock's name from the program: the static field that holds it ({@code static final
 * ReentrantLock checking = ...} names it {@code checking}), looked up once per lock, at its
 * first acquisition seen by a hook (a class's own monitor is {@code X.class}). The fields searched are the static ones of the class
 * whose code takes the lock (the first frame outside the JDK) and of the classes enclosing
 * it; a field holding the lock itself, or the object a monitor is taken on, matches. A lock
 * held only by instance fields or local variables keeps its {@code Class@0xHASH} name (the
 * agent never sees the instance that holds it). Reading a static field of a class whose code
 * is running has no side effect (the class is initialised); a field that cannot be read is
 * skipped.
 */
final class LockNames {
  private static final StackWalker WALKER =
      StackWalker.getInstance(StackWalker.Option.RETAIN_CLASS_REFERENCE);
  /** At most this many fields are read per lock (a huge generated class is not scanned). */
  static final int MAX_FIELDS = 512;

  private LockNames() {}

  /**
   * The name of the static field holding {@code lock} near its caller, or null; a class's
   * own monitor (a {@code static synchronized} method, {@code synchronized (X.class)}) is
   * {@code X.class}.
   */
  static String staticField(Object lock) {
    if (lock instanceof Class) return ((Class<?>) lock).getName() + ".class";
    Class<?> caller =
        WALKER.walk(
            s ->
                s.map(StackWalker.StackFrame::getDeclaringClass)
                    .filter(c -> !Hooks.isRuntimeClass(c.getName()) && !c.getName().startsWith("dev.willowisp."))
                    .findFirst()
                    .orElse(null));
    int budget = MAX_FIELDS;
    for (Class<?> c = caller; c != null && budget > 0; c = c.getEnclosingClass()) {
      Field[] fields;
      try {
        fields = c.getDeclaredFields();
      } catch (Throwable e) {
        return null; // a class whose fields cannot be listed (a missing dependency)
      }
      for (Field f : fields) {
        if (budget-- <= 0) break;
        if (!Modifier.isStatic(f.getModifiers()) || f.getType().isPrimitive()) continue;
        try {
          f.setAccessible(true);
          if (f.get(null) == lock) return f.getName();
        } catch (Throwable e) {
          // not readable (a module that does not open it): not this one
        }
      }
    }
    return null;
  }
}
