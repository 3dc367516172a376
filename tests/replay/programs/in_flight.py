"""Five messages sent on a redis stream and each read back, then a child process spawned:
when the recording ends nothing is travelling. Mirrors the demo, where pricing's five
work-queue messages are all consumed and the shop's children all start.

Usage: python in_flight.py REDIS_PORT          (the parent)
       python in_flight.py REDIS_PORT child    (the child: reads the stream's length)
"""

import subprocess
import sys

import redis


def parent(r: "redis.Redis[bytes]") -> None:
    for n in range(5):
        r.xadd("prices", {"n": str(n)})
    last = "0-0"
    for _ in range(5):
        [(_, [(last, _)])] = r.xread({"prices": last}, count=1)
    subprocess.run([sys.executable, __file__, sys.argv[1], "child"], check=True)


def child(r: "redis.Redis[bytes]") -> None:
    print("child sees", r.xlen("prices"), flush=True)


if __name__ == "__main__":
    conn = redis.Redis(port=int(sys.argv[1]))
    child(conn) if sys.argv[2:] == ["child"] else parent(conn)
