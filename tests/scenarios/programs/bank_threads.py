"""Two threads transfer money between two accounts, each taking the two account locks in
the opposite order: the classic lock-order deadlock. A barrier makes both hold their first
lock before reaching for the second, so it hangs every time."""

import threading

checking_lock = threading.Lock()
savings_lock = threading.Lock()
both_hold_one = threading.Barrier(2)


def to_savings() -> None:
    with checking_lock:
        both_hold_one.wait()
        with savings_lock:
            pass


def to_checking() -> None:
    with savings_lock:
        both_hold_one.wait()
        with checking_lock:
            pass


threading.Thread(target=to_savings, name="to-savings").start()
threading.Thread(target=to_checking, name="to-checking").start()
