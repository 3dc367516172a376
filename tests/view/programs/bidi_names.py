"""Threads whose names carry bidirectional controls, right-to-left letters and 6,000
characters: two of them write one record with nothing ordering the writes (a race), then
two deadlock on two locks. The viewer must show these names as text, escaped and shortened,
without letting them reorder its own words.

Usage: python bidi_names.py     (ends deadlocked: the test kills it)
"""

import threading

import willowisp

FLIP = "\u202eevil\u202c \u05e9\u05dc\u05d5\u05dd"  # RIGHT-TO-LEFT OVERRIDE ... and Hebrew
LONG = "L" * 6000 + "needle-at-the-end"


def write(value: int) -> None:
    willowisp.access("record:acct", "write")


def main() -> None:
    writers = [
        threading.Thread(target=write, args=(1,), name=f"{FLIP} writer"),
        threading.Thread(target=write, args=(2,), name=f"{LONG} writer"),
    ]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    ledger_lock = threading.Lock()
    audit_lock = threading.Lock()
    both = threading.Barrier(2)

    def one() -> None:
        with ledger_lock:
            both.wait()
            with audit_lock:
                pass

    def other() -> None:
        with audit_lock:
            both.wait()
            with ledger_lock:
                pass

    a = threading.Thread(target=one, name=f"{FLIP} one")
    b = threading.Thread(target=other, name=f"{LONG} other")
    a.start()
    b.start()
    a.join()


if __name__ == "__main__":
    main()
