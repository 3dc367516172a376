package dev.willowisp.agent;

/** Event kind codes, block reasons and wake outcomes (docs/format.md, conformance/spec.json). */
final class Kinds {
  static final int UNIT_CREATE = 1;
  static final int UNIT_START = 2;
  static final int UNIT_END = 3;
  static final int UNIT_BLOCK = 4;
  static final int UNIT_WAKE = 5;
  static final int UNIT_RUN = 6;
  static final int LOCK_ACQUIRED = 10;
  static final int LOCK_RELEASE = 11;
  static final int QUEUE_PUT = 12;
  static final int QUEUE_GET = 13;
  static final int SYNC_NOTIFY = 14;
  static final int JOIN_DONE = 16;
  static final int DATA_ACCESS = 17;
  static final int MSG_SEND = 20;
  static final int MSG_RECV = 21;
  static final int RPC_REPLY = 22;
  static final int RPC_RESPONSE = 23;
  static final int PROC_START = 25;
  static final int GC_BEGIN = 30;
  static final int GC_END = 31;
  static final int CLOCK_ANCHOR = 40;
  static final int AGENT_DROP = 41;
  static final int AGENT_FAULT = 42;
  static final int AGENT_FLUSH = 43;
  /**
   * Internal, never written: a virtual thread's start as one ring row (the starter's
   * unit.create, res = the new thread's id, arg = its unit), from which the flusher writes
   * the thread's unit record (Wtrace.VUnits) and the unit.create itself.
   */
  static final int VCREATE = 255;

  // unit.block reasons
  static final int ACQUIRE = 1;
  static final int ACQUIRE_SHARED = 2;
  static final int WAIT = 5;
  static final int RPC = 7;
  static final int SLEEP = 9;
  static final int MESSAGE = 11;

  // unit.wake outcomes
  static final int OK = 0;
  static final int TIMEOUT = 1;
  static final int CANCELLED = 2;
  static final int ERROR = 3;

  private Kinds() {}
}
