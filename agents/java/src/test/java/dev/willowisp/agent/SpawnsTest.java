package dev.willowisp.agent;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The table of threads started inside boundary instances: by id, once, bounded. */
class SpawnsTest {
  static Boundaries.Instance instance() throws Exception {
    return new Boundaries.Instance(
        new Boundaries.Declared(Boundaries.parse("entry=http:GET /spawn", "test"), "test"), 0);
  }

  @Test
  void aStartedThreadTakesItsInstanceOnce() throws Exception {
    Boundaries.Instance inst = instance();
    assertFalse(Spawns.waiting(1_000_001L));
    assertTrue(Spawns.add(1_000_001L, inst, 7));
    assertFalse(Spawns.add(1_000_001L, inst, 8)); // the same thread through a second hook
    assertTrue(Spawns.any());
    assertTrue(Spawns.waiting(1_000_001L));
    assertNull(Spawns.take(1_000_002L));
    Spawns.Entry e = Spawns.take(1_000_001L);
    assertSame(inst, e.inst);
    assertEquals(7, e.parent);
    assertNull(Spawns.take(1_000_001L));
    assertFalse(Spawns.waiting(1_000_001L));
    assertFalse(Spawns.any());
  }

  @Test
  void atMostMaxWaitAndMoreAreCounted() throws Exception {
    Boundaries.Instance inst = instance();
    long dropped = HandOffs.DROPPED.get();
    for (long i = 0; i < Spawns.MAX; i++) assertTrue(Spawns.add(2_000_000L + i, inst, 1));
    assertFalse(Spawns.add(3_000_000L, inst, 1));
    assertEquals(dropped + 1, HandOffs.DROPPED.get());
    for (long i = 0; i < Spawns.MAX; i++) assertSame(inst, Spawns.take(2_000_000L + i).inst);
    assertFalse(Spawns.any());
    assertTrue(Spawns.add(3_000_000L, inst, 1));
    assertSame(inst, Spawns.take(3_000_000L).inst);
  }
}
