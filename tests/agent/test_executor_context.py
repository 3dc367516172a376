"""Work handed to a thread pool: what the task awaiting it is ordered after, and which
request's trace context the work runs under."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tracekit import ProcessTrace, read_run, run_program

from willowisp.model.spec import Outcome, Reason

EXECUTOR_RESULT = """
    import asyncio, willowisp
    data = {}

    def compute(i):
        willowisp.access("data", "read")  # reads what the loop wrote before the hand-off
        return data["x"] * i

    async def main():
        loop = asyncio.get_running_loop()
        data["x"] = 7
        willowisp.access("data", "write")
        r = await loop.run_in_executor(None, compute, 3)
        willowisp.access("data", "write")  # after the result came back: ordered
        data["x"] = r
        r2 = await asyncio.to_thread(compute, 2)
        willowisp.access("data", "write")
        print(r, r2)

    asyncio.run(main())
"""


def _task_of(p: ProcessTrace, coro: str) -> int:
    return next(n for n, u in p.units.items() if str(u.get("coro", "")).endswith(coro))


def test_awaiting_run_in_executor_wakes_after_the_workers_notify(tmp_path: Path) -> None:
    """run_in_executor / to_thread: the task blocks on the work's future and wakes (ok) after
    the worker's notify, so analyze finds no race between the work and what follows it."""
    out = str(tmp_path / "run")
    r = run_program(EXECUTOR_RESULT, out)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["21", "42"]
    p = read_run(out)["prog"]
    task = _task_of(p, "main")
    worker = p.unit_named("asyncio_0")
    for name in ("r", "r2"):
        rid = p.resource(name)
        assert p.resources[rid]["kind"] == "future"
        waits = [
            (e.kind, e.arg) for e in p.of_unit(task) if e.res == rid and e.kind != "unit.yield"
        ]
        assert waits == [("unit.block", Reason.AWAIT), ("unit.wake", Outcome.OK)]
        (notify,) = [e for e in p.of_unit(worker) if e.kind == "sync.notify" and e.res == rid]
        (wake,) = [e for e in p.of_unit(task) if e.kind == "unit.wake" and e.res == rid]
        assert notify.time <= wake.time
    analysis = subprocess.run(
        [sys.executable, "-m", "willowisp", "analyze", out, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert analysis.returncode == 0, analysis.stderr
    kinds = [f["kind"] for f in json.loads(analysis.stdout)["findings"]]
    assert "race" not in kinds, analysis.stdout


# A front service handing each request to a one-thread pool whose job calls a downstream
# service: the pool's only worker is started inside the first request. Each job's outbound
# call must carry the trace of the request that submitted it, and a job submitted outside
# every request none of theirs.
POOLED_SERVICE = """
    import json, threading, urllib.request
    from concurrent.futures import ThreadPoolExecutor
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="worker")
    seen = {"front": [], "down": []}

    def trace_of(headers):
        return (headers.get("traceparent") or "---").split("-")[1]

    class Down(BaseHTTPRequestHandler):
        def do_GET(self):
            seen["down"].append(trace_of(self.headers))
            self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
        def log_message(self, *a): pass

    down = ThreadingHTTPServer(("127.0.0.1", 0), Down)
    threading.Thread(target=down.serve_forever, daemon=True).start()

    def job():
        url = f"http://127.0.0.1:{down.server_address[1]}/"
        urllib.request.urlopen(url, timeout=30).read()

    class Front(BaseHTTPRequestHandler):
        def do_GET(self):
            seen["front"].append(trace_of(self.headers))
            pool.submit(job).result()
            self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
        def log_message(self, *a): pass

    front = ThreadingHTTPServer(("127.0.0.1", 0), Front)
    threading.Thread(target=front.serve_forever, daemon=True).start()
    for i in range(3):  # each call from the main thread roots a trace of its own
        urllib.request.urlopen(f"http://127.0.0.1:{front.server_address[1]}/{i}", timeout=30).read()
    pool.submit(job).result()  # submitted by the main thread, inside no request
    front.shutdown(); down.shutdown(); pool.shutdown()
    print(json.dumps(seen))
"""


def test_pool_work_runs_under_the_submitters_trace_context(tmp_path: Path) -> None:
    """Each job runs under its submitting request's trace, not the one its worker thread was
    started in; a job submitted outside every request carries none of theirs."""
    out = str(tmp_path / "run")
    r = run_program(POOLED_SERVICE, out)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    front, down = seen["front"], seen["down"]
    assert len(set(front)) == 3, seen  # three requests, three traces
    assert down[:3] == front, seen
    assert down[3] not in front, seen
