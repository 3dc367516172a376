"""Three services in a chain, front -> middle -> back, each on its own simulated host with
its own clock offset (a UTS namespace and libfaketime where the machine allows). The front
sends 20 requests through the chain and exits; the children are stopped.

Usage: python chain.py MIDDLE_OFFSET_NS BACK_OFFSET_NS
"""

import os
import subprocess
import sys
import urllib.request

from willowisp.hostsim import simulated_host

HERE = os.path.dirname(os.path.abspath(__file__))


def start(name: str, host: str, offset_ns: int, *args: str) -> tuple[subprocess.Popen[str], int]:
    sim = simulated_host(host, offset_ns)
    cmd = [
        *sim.prefix,
        "env",
        *(f"{k}={v}" for k, v in sim.env.items()),
        sys.executable,
        os.path.join(HERE, "chain_hop.py"),
        name,
        *args,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, int(line.split()[-1])


back, back_port = start("back", "back-host", int(sys.argv[2]))
middle, middle_port = start("middle", "middle-host", int(sys.argv[1]), str(back_port))
try:
    for _ in range(20):
        with urllib.request.urlopen(f"http://127.0.0.1:{middle_port}/work", timeout=30) as r:
            assert r.read() == b"middle>back"
    print("chain done", flush=True)
finally:
    for p in (middle, back):
        p.terminate()
        p.wait(timeout=30)
