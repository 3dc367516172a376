"""Two threads update one account under a lock, three turns each; which goes first in a
turn is decided by the program's argument (``deposit`` or ``withdraw``) through pipes the
agent does not see, so as far as the trace knows the two threads race for the lock every
turn. Both orders pass; `willowisp diff` of the two runs shows the flipped interleaving."""

import os
import sys
import threading

account_lock = threading.Lock()
balance = [100]
first = sys.argv[1] if len(sys.argv) > 1 else "deposit"
go = {"deposit": os.pipe(), "withdraw": os.pipe()}
done = {"deposit": os.pipe(), "withdraw": os.pipe()}


def worker(name: str, delta: int) -> None:
    for _ in range(3):
        os.read(go[name][0], 1)
        if name == "deposit":
            with account_lock:  # deposit
                balance[0] += delta
        else:
            with account_lock:  # withdraw
                balance[0] += delta
        os.write(done[name][1], b"x")


threads = [
    threading.Thread(target=worker, args=("deposit", 10), name="depositor"),
    threading.Thread(target=worker, args=("withdraw", -10), name="withdrawer"),
]
for t in threads:
    t.start()
order = ["deposit", "withdraw"] if first == "deposit" else ["withdraw", "deposit"]
for _ in range(3):
    for name in order:
        os.write(go[name][1], b"x")
        os.read(done[name][0], 1)
for t in threads:
    t.join()
print(balance[0])
