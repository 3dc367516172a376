"""Two threads take the same two locks in opposite orders, but never at the same time:
transfer() takes accounts_lock then ledger_lock and sets `done`; refund() waits for `done`
before it takes ledger_lock then accounts_lock. The program always finishes, yet without
the event the two could each take their first lock and wait for the other's forever."""

import threading

accounts_lock = threading.Lock()
ledger_lock = threading.Lock()
done = threading.Event()


def transfer() -> None:
    with accounts_lock:  # transfer: first
        with ledger_lock:  # transfer: second
            pass
    done.set()


def refund() -> None:
    done.wait()
    with ledger_lock:  # refund: first
        with accounts_lock:  # refund: second
            pass


threads = [
    threading.Thread(target=transfer, name="transfer"),
    threading.Thread(target=refund, name="refund"),
]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("ok")
