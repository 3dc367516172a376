package dev.willowisp.agent;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The table of tasks handed off from boundary instances: identity, once, bounded. */
class HandOffsTest {
  /** A task whose equals says every instance is the same one (a record would, by value). */
  static final class Equal implements Runnable {
    @Override
    public void run() {}

    @Override
    public boolean equals(Object o) {
      return o instanceof Equal;
    }

    @Override
    public int hashCode() {
      return 1;
    }
  }

  @Test
  void tasksAreKeptByIdentityAndTakenOnce() throws Exception {
    Boundaries.Instance inst =
        new Boundaries.Instance(new Boundaries.Declared(Boundaries.parse("entry=http:GET /x", "test"), "test"), 0);
    Runnable a = new Equal();
    Runnable b = new Equal();
    long ta = HandOffs.add(a, inst);
    assertTrue(ta > 0);
    assertEquals(0, HandOffs.add(a, inst)); // the same task through a second hook
    assertTrue(HandOffs.any());
    assertNull(HandOffs.take(b)); // equal, but not the task handed off
    HandOffs.Entry e = HandOffs.take(a);
    assertSame(inst, e.inst);
    assertEquals(ta, e.token);
    assertNull(HandOffs.take(a));
    assertFalse(HandOffs.any());
    long tb = HandOffs.add(b, inst);
    assertNotEquals(ta, tb);
    assertEquals(tb, HandOffs.take(b).token);
  }

  @Test
  void theTableIsBounded() throws Exception {
    Boundaries.Instance inst =
        new Boundaries.Instance(new Boundaries.Declared(Boundaries.parse("entry=http:GET /y", "test"), "test"), 0);
    Object[] kept = new Object[HandOffs.MAX];
    long dropped = HandOffs.DROPPED.get();
    for (int i = 0; i < kept.length; i++) {
      kept[i] = new Object();
      assertTrue(HandOffs.add(kept[i], inst) > 0);
    }
    assertEquals(0, HandOffs.add(new Object(), inst));
    assertEquals(dropped + 1, HandOffs.DROPPED.get());
    for (Object k : kept) assertSame(inst, HandOffs.take(k).inst);
    assertFalse(HandOffs.any());
  }
}
