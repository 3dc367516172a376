package dev.willowisp.agent;

import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerArray;

/**
 * Virtual threads' unit ids by thread id: pages of 4096 ints, no boxing and no node per
 * thread (a program may start a million virtual threads a second; a ConcurrentHashMap entry
 * per thread cost ~64 bytes of garbage each). Thread ids are handed out in order, so a
 * page fills and, once every entry in it is removed (JFR's VirtualThreadEnd) and every id
 * of its range handed out, it is dropped. A page's count of live entries is -1 once it is
 * dropped: a put increments it only while it is not, so nothing is put into a dropped page.
 * Any thread; never blocks but for the page map's own locks when a page is made.
 */
final class TidUnits {
  static final int SHIFT = 12;
  static final int MASK = (1 << SHIFT) - 1;

  static final class Page {
    final long index;
    final AtomicIntegerArray units = new AtomicIntegerArray(1 << SHIFT);
    /** Entries in the page; -1 once dropped. */
    final AtomicInteger live = new AtomicInteger();

    Page(long index) {
      this.index = index;
    }
  }

  private final ConcurrentHashMap<Long, Page> pages = new ConcurrentHashMap<>();
  /** The page used last (starts are in id order: almost always the right one). */
  private volatile Page last;
  /** The highest thread id put so far (racy; only decides when a page may be dropped). */
  private volatile long maxTid;

  private Page page(long index, boolean create) {
    Page p = last;
    if (p != null && p.index == index && p.live.get() >= 0) return p;
    p = pages.get(index);
    if (p == null) {
      if (!create) return null;
      p = pages.computeIfAbsent(index, Page::new);
    }
    last = p;
    return p;
  }

  /** The unit of thread tid, or 0. */
  int get(long tid) {
    if (tid <= 0) return 0;
    Page p = page(tid >>> SHIFT, false);
    return p == null ? 0 : p.units.get((int) tid & MASK);
  }

  /** Sets the unit of thread tid unless it has one; returns that one, or 0 when set. */
  int putIfAbsent(long tid, int unit) {
    if (tid > maxTid) maxTid = tid;
    long index = tid >>> SHIFT;
    for (; ; ) {
      Page p = page(index, true);
      if (!enter(p)) { // dropped meanwhile: a new page
        pages.remove(index, p);
        continue;
      }
      int had = p.units.compareAndExchange((int) tid & MASK, 0, unit);
      if (had == 0) return 0;
      leave(p);
      return had;
    }
  }

  /** Forgets thread tid's unit; whether it had one here. */
  boolean remove(long tid) {
    if (tid <= 0) return false;
    Page p = page(tid >>> SHIFT, false);
    if (p == null || p.units.getAndSet((int) tid & MASK, 0) == 0) return false;
    leave(p);
    return true;
  }

  /** Pages held (for tests). */
  int pages() {
    return pages.size();
  }

  private static boolean enter(Page p) {
    for (; ; ) {
      int n = p.live.get();
      if (n < 0) return false;
      if (p.live.compareAndSet(n, n + 1)) return true;
    }
  }

  private void leave(Page p) {
    // the page's whole id range handed out and nothing left in it: drop it
    if (p.live.decrementAndGet() == 0 && (p.index + 1) << SHIFT <= maxTid && p.live.compareAndSet(0, -1)) {
      pages.remove(p.index, p);
      if (last == p) last = null;
    }
  }
}
