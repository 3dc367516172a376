"""Benchmark: what the Python agent costs a service-like HTTP workload, per mode.

A front service (``http.server.ThreadingHTTPServer``, HTTP/1.1 keep-alive) does a fixed
~50 us of Python work per request and one call to a downstream service (the same kind of
server, answering at once) over a keep-alive ``http.client`` connection per handler
thread. A load generator sends N requests over C keep-alive connections and measures the
wall time. The three are processes of their own (this script, run with a role), and each
configuration starts both services afresh with the environment ``willowisp run`` gives a
program (``build_env``; without the launcher process, whose start-up is not the program's
cost), then a warm-up on the same connections before the measured requests.

Configurations (``--configs``, comma-separated; ratios are to the first, the baseline):
``baseline`` (no agent), ``hops ratio 0`` (``--mode hops --trace-ratio 0``: propagation
only, nothing recorded per request), ``hops ratio 0.1`` (one trace in ten recorded, decided
at the root: what always-on use would set), ``hops`` (every hop recorded), ``full``
(every concurrency event: a debugging run).

The work per request is a calibrated number of loop iterations, not a spin until a
deadline: on a shared machine a spinning thread loses the CPU while its deadline passes,
which would make the work shrink as the agent's threads add contention. The figure to
trust is the front service's CPU time during the measured window (``time.process_time()``
read through ``GET /cpu`` before and after): other processes move wall time by tens of per
cent on a shared 2-core machine, CPU time far less. The downstream's CPU is shown too (it
runs the agent as well). Rounds alternate the order of the configurations so drift on the
machine affects them alike; per round, the difference to the baseline of the same round
(paired) is steadier than the difference of the medians. Also printed: the events each
service recorded per request (warm-up included), the machine's CPU count and load
average. Prints figures and ratios; asserts nothing.

    python bench/bench_python_hops.py [--requests 4000] [--warmup 1000] [--rounds 5]
        [--connections 8] [--configs baseline,"hops ratio 0","hops ratio 0.1",hops,full]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SCRIPT = Path(__file__).resolve()
WORK_US = 50  # the front service's own work per request

# name -> (mode, trace ratio); mode None: no agent
CONFIGS: dict[str, tuple[str | None, float]] = {
    "baseline": (None, 1.0),
    "hops ratio 0": ("hops", 0.0),
    "hops ratio 0.1": ("hops", 0.1),
    "hops": ("hops", 1.0),
    "full": ("full", 1.0),
}


# --- the roles: downstream, front and load, each run as `python THIS ROLE ...` ---------


def work(iterations: int) -> int:
    """The front's own work: a fixed amount of pure-Python arithmetic."""
    acc = 0
    for i in range(iterations):
        acc = (acc * 31 + i) & 0xFFFF
    return acc


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 can drop SYNs of 8 connections opened at once


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    # headers and body are two writes: without this, Nagle's algorithm holds the body back
    # until the client's delayed ACK (~40 ms) of the headers
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass  # one stderr line per request would be most of what we measure

    def reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def reply_cpu(self) -> None:
        self.reply(f"{time.process_time() * 1000:.3f}".encode())


class Downstream(Handler):
    def do_GET(self) -> None:
        if self.path == "/cpu":
            self.reply_cpu()
        else:
            self.reply(b"42")


class Front(Handler):
    down_port = 0
    iterations = 0
    local = threading.local()  # each handler thread keeps its own downstream connection

    def do_GET(self) -> None:
        if self.path == "/cpu":
            self.reply_cpu()
            return
        work(self.iterations)
        self.reply(b"stock " + self.downstream_get("/stock"))

    def downstream_get(self, path: str) -> bytes:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.down_port)
        conn.request("GET", path)
        return conn.getresponse().read()


def serve(handler: type[Handler]) -> None:
    """Listen on a free port, say which on stdout, serve until SIGTERM."""
    server = Server(("127.0.0.1", 0), handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


def get(conn: http.client.HTTPConnection, path: str) -> bytes:
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise SystemExit(f"GET {path}: {resp.status} {body[:200]!r}")
    return body


def drive(conns: list[http.client.HTTPConnection], n: int) -> None:
    """N requests of GET /work, one thread per connection, each sending its next request as
    soon as its last one is answered."""
    left = iter(range(n))  # next() on a range iterator is atomic under the GIL
    errors: list[BaseException] = []

    def client(conn: http.client.HTTPConnection) -> None:
        try:
            for _ in left:
                get(conn, "/work")
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"load: {errors[0]!r}")


def load(front_port: int, down_port: int, warmup: int, n: int, conc: int) -> None:
    """Warm up, then measure: prints wall ms, front CPU ms and downstream CPU ms."""
    conns = [http.client.HTTPConnection("127.0.0.1", front_port) for _ in range(conc)]
    probe_front = http.client.HTTPConnection("127.0.0.1", front_port)
    probe_down = http.client.HTTPConnection("127.0.0.1", down_port)
    drive(conns, warmup)
    f0 = float(get(probe_front, "/cpu"))
    d0 = float(get(probe_down, "/cpu"))
    t0 = time.perf_counter()
    drive(conns, n)
    wall = time.perf_counter() - t0
    f1 = float(get(probe_front, "/cpu"))
    d1 = float(get(probe_down, "/cpu"))
    print(f"{wall * 1000:.3f} {f1 - f0:.3f} {d1 - d0:.3f}")


def role_main(argv: list[str]) -> None:
    role, *args = argv
    if role == "downstream":
        serve(Downstream)
    elif role == "front":
        Front.down_port, Front.iterations = int(args[0]), int(args[1])
        serve(Front)
    else:
        front, down, warmup, n, conc = (int(x) for x in args)
        load(front, down, warmup, n, conc)


# --- the driver ------------------------------------------------------------------------

LIVE: set[subprocess.Popen[str]] = set()  # killed on any exit of the driver


def calibrate() -> int:
    """Loop iterations taking WORK_US here, best of several tries (the least disturbed)."""
    n = 1000
    best = min(timed(work, n) for _ in range(50))
    iterations = max(1, round(n * WORK_US * 1000 / best))
    best = min(timed(work, iterations) for _ in range(200))
    return max(1, round(iterations * WORK_US * 1000 / best))


def timed(fn: Callable[[int], int], arg: int) -> int:
    t0 = time.perf_counter_ns()
    fn(arg)
    return time.perf_counter_ns() - t0


def plain_env() -> dict[str, str]:
    """Our environment without any agent: what the baseline and the load generator get."""
    from willowisp.agent.bootstrap import agent_path

    env = {k: v for k, v in os.environ.items() if not k.startswith("WILLOWISP_")}
    keep = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != agent_path()]
    env["PYTHONPATH"] = os.pathsep.join(keep)
    if not keep:
        del env["PYTHONPATH"]
    return env


def config_env(config: str, out: Path, service: str) -> dict[str, str]:
    from willowisp.cli.run import build_env

    mode, ratio = CONFIGS[config]
    if mode is None:
        return plain_env()
    return build_env(str(out), mode, ratio, [], service, plain_env())


def start_server(
    args: list[str], env: dict[str, str], log: Path
) -> tuple[subprocess.Popen[str], int]:
    """Start a service (in a session of its own, so a Ctrl-C at the terminal reaches only
    us and we stop it) and wait for its PORT line."""
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            start_new_session=True,
        )
    LIVE.add(proc)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("PORT "):
        stop(proc)
        raise SystemExit(f"{args[0]} did not start: {line!r}\n{log.read_text()[-2000:]}")
    return proc, int(line.split()[1])


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM (the agent flushes its last events, then the process dies of it), else kill."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    LIVE.discard(proc)


@contextlib.contextmanager
def services(config: str, iterations: int, tmp: Path) -> Iterator[tuple[int, int]]:
    """Downstream and front of one configuration, both with its agent settings."""
    out = tmp / "run"
    down, down_port = start_server(
        ["downstream"], config_env(config, out, "downstream"), tmp / "downstream.log"
    )
    try:
        front, front_port = start_server(
            ["front", str(down_port), str(iterations)],
            config_env(config, out, "front"),
            tmp / "front.log",
        )
        try:
            yield front_port, down_port
        finally:
            stop(front)
    finally:
        stop(down)


def events_by_service(out: Path) -> dict[str, int]:
    """Events recorded in a run folder, per service (file names start with it)."""
    from willowisp.wtrace import read_file

    counts: dict[str, int] = {}
    for f in out.glob("*.wtrace"):
        service = f.name.split("-", 1)[0]
        counts[service] = counts.get(service, 0) + read_file(f).events
    return counts


Figures = tuple[float, float, float, float, float]  # wall, front CPU, down CPU (ms), events


def one_round(config: str, iterations: int, a: argparse.Namespace, tmp: Path) -> Figures:
    work_dir = tmp / config.replace(" ", "-")
    work_dir.mkdir()
    try:
        with services(config, iterations, work_dir) as (front_port, down_port):
            done = subprocess.run(
                [sys.executable, str(SCRIPT), "load", str(front_port), str(down_port)]
                + [str(a.warmup), str(a.requests), str(a.connections)],
                capture_output=True,
                text=True,
                env=plain_env(),
                check=False,  # its stderr says why; reported below
                timeout=900,
                start_new_session=True,
            )
        if done.returncode != 0:
            raise SystemExit(f"{config}: the load generator failed:\n{done.stderr[-2000:]}")
        wall, fcpu, dcpu = (float(x) for x in done.stdout.split())
        events = events_by_service(work_dir / "run")
        note_stderr(config, work_dir)
        return wall, fcpu, dcpu, events.get("front", 0), events.get("downstream", 0)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)  # full-mode runs are large


NOTED: set[str] = set()


def note_stderr(config: str, work_dir: Path) -> None:
    """Show once per configuration what a service said on stderr (the agent's lines)."""
    for log in sorted(work_dir.glob("*.log")):
        text = log.read_text().strip()
        key = f"{config}/{log.stem}"
        if text and key not in NOTED:
            NOTED.add(key)
            print(f"  [{config}] {log.stem} stderr: {text.splitlines()[0][:160]}")


def table(runs: dict[str, list[Figures]], requests: int, warmup: int) -> None:
    """One line per configuration: medians and minima, ratios to the first configuration,
    what each adds per request; then each round's figures and the paired differences."""
    per = 1000 / requests  # ms per run -> us per request
    base = next(iter(runs.values()))
    bw = statistics.median(r[0] for r in base)
    bwmin = min(r[0] for r in base)
    bc = statistics.median(r[1] for r in base)
    bcmin = min(r[1] for r in base)
    bd = statistics.median(r[2] for r in base)
    print(
        f"\n{'configuration':<16}{'wall med':>9}{'min':>8}{'us/req':>8}{'ratio':>7}"
        f"{'min r.':>7}{'cpu med':>9}{'min':>8}{'us/req':>8}{'ratio':>7}{'min r.':>7}"
        f"{'+cpu us/req':>12}{'down +us/req':>13}{'ev/req f,d':>12}"
    )
    print(
        "(ms per round; us/req: per measured request, wall: the inverse of the throughput;"
        " +cpu: front CPU over the baseline's; down: the downstream's; ev/req: events each"
        " service recorded)"
    )
    for name, rs in runs.items():
        w = statistics.median(r[0] for r in rs)
        wmin = min(r[0] for r in rs)
        c = statistics.median(r[1] for r in rs)
        cmin = min(r[1] for r in rs)
        d = statistics.median(r[2] for r in rs)
        ev_f = statistics.median(r[3] for r in rs) / (requests + warmup)
        ev_d = statistics.median(r[4] for r in rs) / (requests + warmup)
        print(
            f"{name:<16}{w:>9.0f}{wmin:>8.0f}{w * per:>8.0f}{w / bw:>6.2f}x{wmin / bwmin:>6.2f}x"
            f"{c:>9.0f}{cmin:>8.0f}{c * per:>8.0f}{c / bc:>6.2f}x{cmin / bcmin:>6.2f}x"
            f"{(c - bc) * per:>12.1f}{(d - bd) * per:>13.1f}{f'{ev_f:.1f},{ev_d:.1f}':>12}"
        )
    for col, what in ((1, "front CPU"), (0, "wall")):
        print(f"\nper round, {what} ms (rounds alternate the order of the configurations):")
        for name, rs in runs.items():
            print(f"  {name:<16}" + "".join(f"{r[col]:>8.0f}" for r in rs))
        base_col = [r[col] for r in base]
        for name, rs in list(runs.items())[1:]:
            diffs = sorted((r[col] - b) * per for r, b in zip(rs, base_col, strict=True))
            print(
                f"  {name:<16} - baseline, paired, {what} us/request: median"
                f" {statistics.median(diffs):.1f} (min {diffs[0]:.1f}, max {diffs[-1]:.1f})"
            )


def parse_configs(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in CONFIGS:
            raise SystemExit(f"unknown configuration {n!r}: one of {', '.join(CONFIGS)}")
    if not names:
        raise SystemExit("--configs names no configuration")
    return names


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench(a: argparse.Namespace, names: list[str]) -> None:
    iterations = calibrate()
    native = "yes" if importable("willowisp._native") else "no"
    print(
        f"python {sys.version.split()[0]} ({sys.executable}; agent C fast path: {native});"
        f" {a.requests} requests after {a.warmup} of warm-up, {a.connections} keep-alive"
        f" connections, x {a.rounds} rounds; work: {iterations} loop iterations (~{WORK_US}"
        f" us here); {os.cpu_count()} CPUs; load average at start {loadavg()}"
    )
    runs: dict[str, list[Figures]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="wisp-bench-pyhops-") as td:
        for r in range(a.rounds):
            # each round starts with another configuration: none always runs first
            k = r % len(names)
            for name in names[k:] + names[:k]:
                runs[name].append(one_round(name, iterations, a, Path(td)))
    table(runs, a.requests, a.warmup)
    print(f"load average at the end {loadavg()}")


def importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("downstream", "front", "load"):
        role_main(sys.argv[1:])
        return
    ap = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--requests", type=int, default=4000, help="measured requests per round")
    ap.add_argument("--warmup", type=int, default=1000, help="requests before the measured ones")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=8, help="keep-alive connections (C)")
    ap.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"comma-separated, the first is the baseline; of: {', '.join(CONFIGS)}",
    )
    a = ap.parse_args()
    if a.requests < 1 or a.warmup < 0 or a.rounds < 1 or a.connections < 1:
        ap.error("--requests, --rounds and --connections must be positive, --warmup >= 0")
    names = parse_configs(a.configs)
    # SIGTERM and SIGHUP unwind like Ctrl-C, through the finally blocks that stop servers
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    try:
        bench(a, names)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        for proc in list(LIVE):  # a backstop: each server's own finally stops it
            stop(proc)


if __name__ == "__main__":
    main()
