"""The lost update of race_shop.py with the write order chosen, for the finding-id tests.

Two stock services (this file with ``stock``, services ``stock_a`` and ``stock_b``) each
read product 42's quantity from one SQLite row, then write it back minus one. The
orchestrator (this process) lets them write one after the other, FIRST first, over a raw
TCP socket the agent does not record, so the trace orders only what SQLite's write lock
orders: the first writer's read comes before the second's write, and what races is the
second writer's read with the first writer's write. Which service reads and which writes
in the race finding is therefore FIRST's choice, not the scheduler's.

    python race_turns.py stock_a|stock_b FOLDER   (FOLDER gets shop.db)
"""

import os
import socket
import sqlite3
import subprocess
import sys

SERVICES = ("stock_a", "stock_b")


def stock(db: str, port: int, name: str) -> None:
    """Read, tell the orchestrator, write when it says so, tell it the write is done."""
    conn = sqlite3.connect(db, timeout=30)
    (qty,) = conn.execute("SELECT qty FROM stock WHERE id = ?", (42,)).fetchone()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(name.encode() + b"\n")
        assert s.recv(1) == b"g"
        conn.execute("UPDATE stock SET qty = ? WHERE id = ?", (qty - 1, 42))
        conn.commit()
        s.sendall(b"d")
        assert s.recv(1) == b""  # the orchestrator closed: the run is over
    conn.close()


def take_turns(listener: socket.socket, first: str) -> None:
    """Once both have read, let ``first`` write, then the other."""
    peers: dict[str, socket.socket] = {}
    while len(peers) < len(SERVICES):
        conn = listener.accept()[0]
        peers[conn.makefile("rb").readline().decode().strip()] = conn
    for name in sorted(peers, key=lambda n: n != first):
        peers[name].sendall(b"g")
        assert peers[name].recv(1) == b"d"
    for conn in peers.values():
        conn.close()


def main(first: str, folder: str) -> None:
    db = os.path.join(folder, "shop.db")
    setup = sqlite3.connect(db)
    setup.execute("DROP TABLE IF EXISTS stock")
    setup.execute("CREATE TABLE stock (id INTEGER PRIMARY KEY, qty INTEGER)")
    setup.execute("INSERT INTO stock VALUES (42, 10)")
    setup.commit()
    setup.close()
    listener = socket.create_server(("127.0.0.1", 0))
    port = str(listener.getsockname()[1])
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "stock", db, port, name],
            env={**os.environ, "OTEL_SERVICE_NAME": name},
        )
        for name in SERVICES
    ]
    take_turns(listener, first)
    listener.close()
    for child in children:
        assert child.wait() == 0
    # no read of the result here: waiting for a child orders nothing in the trace, so
    # that read would race with both writes too
    print(f"{first} wrote first", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "stock":
        stock(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        main(sys.argv[1], sys.argv[2])
