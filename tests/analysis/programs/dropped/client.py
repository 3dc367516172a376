"""The calling service: POSTs /prices N times through a proxy that strips traceparent.

The proxy is plain sockets (no hooked library), so only the client and the server record
the request: the client with the context it injected, the server with none arriving, like
the demo's header-filtering gateway between pricing and ledger."""

import socket
import subprocess
import sys
import threading
import urllib.request

N = 5


def strip_traceparent(request: bytes) -> bytes:
    head, sep, body = request.partition(b"\r\n\r\n")
    lines = [x for x in head.split(b"\r\n") if not x.lower().startswith(b"traceparent:")]
    return b"\r\n".join(lines) + sep + body


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head = data.split(b"\r\n\r\n", 1)[0].lower()
    length = next(
        (int(x.split(b":")[1]) for x in head.split(b"\r\n") if x.startswith(b"content-length:")),
        0,
    )
    while len(data.split(b"\r\n\r\n", 1)[1]) < length:
        data += conn.recv(65536)
    return data


def proxy(listener: socket.socket, upstream: int) -> None:
    for _ in range(N):
        conn, _ = listener.accept()
        with conn, socket.create_connection(("127.0.0.1", upstream)) as up:
            up.sendall(strip_traceparent(read_request(conn)))
            up.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := up.recv(65536):
                reply += chunk
            conn.sendall(reply)


server = subprocess.Popen(
    [sys.executable, sys.argv[1]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
)
assert server.stdout is not None and server.stdin is not None
port = int(server.stdout.readline())
listener = socket.create_server(("127.0.0.1", 0))
thread = threading.Thread(target=proxy, args=(listener, port), daemon=True)
thread.start()
url = f"http://127.0.0.1:{listener.getsockname()[1]}/prices"
for i in range(N):
    with urllib.request.urlopen(urllib.request.Request(url, data=b"p=1", method="POST")) as r:
        assert r.read() == b"ok"
    if i < N - 1:
        server.stdin.write("next\n")
        server.stdin.flush()
server.stdin.close()
server.wait(timeout=30)
print("sent", N)
