package dev.willowisp.agent;

import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;

/** Thread facts that differ between JDKs: virtual threads exist from 21 on. */
final class Threads {
  private static final MethodHandle IS_VIRTUAL = find();

  private Threads() {}

  private static MethodHandle find() {
    try {
      return MethodHandles.publicLookup()
          .findVirtual(Thread.class, "isVirtual", MethodType.methodType(boolean.class));
    } catch (ReflectiveOperationException e) {
      return null; // JDK 17-20: no virtual threads
    }
  }

  /** JDK 21+: the runtime has virtual threads (and carrier threads). */
  static boolean virtualThreadsExist() {
    return IS_VIRTUAL != null;
  }

  static boolean isVirtual(Thread t) {
    if (IS_VIRTUAL == null) return false;
    try {
      return (boolean) IS_VIRTUAL.invokeExact(t);
    } catch (Throwable e) {
      return false;
    }
  }
}
