"""The demo shop's orchestrator: an asyncio program that starts the shop's services, drives
its traffic and, at the end, walks it into its deadlock. ``willowisp demo`` (runner.py)
runs it with the agents enabled (``willowisp run``'s environment); every service is its
child and inherits that.

    python -m willowisp.demo.shop PLAN_JSON [fixed]

PLAN_JSON maps a service to the command that starts it (absent: not built, skipped):
``inventory`` (Go), ``pricing`` (Node), ``ledger`` (Java), ``risk`` (Rust, maybe on a
simulated host). The orchestrator itself serves, on a ThreadingHTTPServer:

- ``POST /jobs`` and ``GET /jobs/next``: the shop's work queue (a ``queue.Queue``; no
  broker). pricing publishes a price update per order; inventory polls for them.
- ``GET /hold``: needs ``cart_lock`` (the last link of the deadlock).

and an edge gateway to the ledger (gateway.py) that drops the trace header.

Traffic, each step sequenced on a signal (a reply, a line a service prints), never a sleep:

1. ``ORDERS`` orders. Each: inventory ``Reserve`` (gRPC) and pricing ``/quote`` (which publishes
   a price update and posts the price to the ledger through the gateway), and at the same
   time ledger ``/settle`` and risk ``/score``, which both write account:42 (the race);
   then the orchestrator waits for inventory's ``applied price-N`` line (its consumer
   polled the queue and took the update).
2. The deadlock, through Python, Go and Node:

       checkout holds cart_lock, calls inventory /a -> /a waits for inventory (wisp.Mutex)
       inventory /b holds inventory, calls pricing /c -> /c waits for priceTable (async-mutex)
       pricing /d holds priceTable, calls the shop's /hold -> /hold waits for cart_lock

   Once the cycle is closed and nothing moved for STUCK_S seconds the shop prints
   ``shop: deadlocked``, ends the services without disturbing the recorded cycle (see
   ``Shop.stop``) and leaves with os._exit: its own threads are stuck for good.

``fixed`` (``willowisp demo --fixed``) runs the same shop with its own bugs fixed: each
order settles with the ledger *before* it asks risk for a score (the shop's program order
then orders the two writes of account:42), the gateway forwards the trace context, and
there is no deadlock phase. The skewed host and the polling consumer stay: they are the
environment, not the shop's code.

Lines on stdout starting ``shop:`` tell the runner what happened; ``shop: <service> failed:
<why>`` names a service that did not start or ended on its own (the runner then shows its
log's tail and fails), and the shop exits 1 when it stopped early. Each service's stderr goes
to ``logs/<service>.log`` in the run folder.

The runner starts this module with ``python -P``: the user's working directory is not on
``sys.path``, so a file there named like a module the shop imports (``http.py``) is not
imported in its place.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import willowisp
from willowisp.demo.gateway import start_gateway

ORDERS = 5
SIGNAL_TIMEOUT_S = 30.0
STUCK_S = 1.0
CALL_TIMEOUT_S = 60.0


class Stalled(Exception):
    """A signal did not come: the shop stops early (and says why)."""


def say(line: str) -> None:
    print(f"shop: {line}", flush=True)


def log_path(name: str) -> str:
    """Where service ``name``'s stderr goes: ``logs/`` in the run folder."""
    folder = os.path.join(os.environ.get("WILLOWISP_OUT", "."), "logs")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f"{name}.log")


class Service:
    """A child process whose stdout lines are signals. One that ``stdin_ends_it`` (the Rust
    service) ends when its stdin closes; any other on SIGTERM."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, stdin_ends_it: bool) -> None:
        self.name = name
        self.proc = proc
        self.stdin_ends_it = stdin_ends_it

    @classmethod
    async def start(cls, name: str, argv: list[str], stdin_ends_it: bool = False) -> Service:
        env = {**os.environ, "WILLOWISP_SERVICE": name}
        with open(log_path(name), "ab") as log:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.PIPE if stdin_ends_it else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
            )
        return cls(name, proc, stdin_ends_it)

    async def expect(self, prefix: str) -> str:
        """The next line that starts with ``prefix`` (others are skipped)."""
        assert self.proc.stdout is not None
        while True:
            try:
                raw = await asyncio.wait_for(self.proc.stdout.readline(), SIGNAL_TIMEOUT_S)
            except TimeoutError:
                raise Stalled(f"{self.name}: no {prefix!r} line in {SIGNAL_TIMEOUT_S} s") from None
            if not raw:
                raise Stalled(f"{self.name} ended before saying {prefix!r}")
            line = raw.decode(errors="replace").strip()
            if line.startswith(prefix):
                return line

    async def port(self) -> int:
        return int((await self.expect("PORT ")).split()[1])

    async def end(self) -> None:
        """Ask it to end (its agent stores its recording), and wait for that."""
        if self.proc.returncode is None:
            if self.stdin_ends_it:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            else:
                self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), SIGNAL_TIMEOUT_S)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def reserve(port: int, order: int) -> str:
    """inventory's gRPC method /demo.Inventory/Reserve, its messages plain bytes (no
    generated stubs; the Go side serves them with a pass-through codec). The Python agent
    records the call and puts the trace context into its metadata."""
    import grpc  # type: ignore[import-untyped]

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        method = channel.unary_unary(
            "/demo.Inventory/Reserve",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        reply: bytes = method(str(order).encode(), timeout=CALL_TIMEOUT_S)
    return reply.decode()


def call(port: int, path: str, method: str = "GET") -> str:
    """One blocking HTTP request (urllib: the Python agent records it and sends context)."""
    data = b"" if method == "POST" else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    with urllib.request.urlopen(request, timeout=CALL_TIMEOUT_S) as resp:
        body: bytes = resp.read()
    return body.decode()


# The work queue: what inventory publishes and pricing polls for.
jobs: queue.Queue[bytes] = queue.Queue()
# The checkout's lock: held by checkout() across its call to inventory, needed by /hold.
cart_lock = threading.Lock()
hold_arrived = threading.Event()
never = threading.Event()  # a stuck call that failed when the services ended stays stuck


class InFlight:
    """The requests the shop's server accepted and is still answering, but for the one
    that joins the deadlock (``/hold``, stuck for good): the shop waits for none before its
    agent stops (see ``Shop.stop``). Counted from the accept, so a request whose handler
    has not run yet counts too. Invariant: ``_count`` >= 0, changed under ``_cond``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0
        self._left = threading.local()  # this handler thread has already said it left

    def enter(self) -> None:
        with self._cond:
            self._count += 1

    def leave(self) -> None:
        if getattr(self._left, "done", False):
            return
        self._left.done = True
        with self._cond:
            self._count -= 1
            self._cond.notify_all()

    def wait_idle(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._count == 0, SIGNAL_TIMEOUT_S)


in_flight = InFlight()


class ShopServer(ThreadingHTTPServer):
    """The shop's server, counting the requests it is answering (``in_flight``)."""

    def process_request(self, request: Any, client_address: Any) -> None:
        in_flight.enter()
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            in_flight.leave()


class ShopHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        if self.path != "/jobs":
            self.send_error(404)
            return
        jobs.put(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self._answer(201, b"queued")

    def do_GET(self) -> None:
        if self.path == "/jobs/next":
            self._next_job()
        elif self.path == "/hold":
            in_flight.leave()  # it joins the deadlock: never answered
            hold_arrived.set()
            with cart_lock:  # taken by checkout(), which waits for inventory
                body = b"shop:hold"
            self._answer(200, body)
        else:
            self.send_error(404)

    def _next_job(self) -> None:
        try:
            job = jobs.get_nowait()
        except queue.Empty:
            self._answer(204, b"")
            return
        self._answer(200, job)

    def _answer(self, status: int, body: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the caller ended (the services stop at the end of the demo)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Shop:
    """The running system: the services that started, by name."""

    def __init__(self, plan: dict[str, list[str]], shop_port: int, fixed: bool = False) -> None:
        self.plan = plan
        self.fixed = fixed
        self.shop_port = shop_port
        self.services: dict[str, Service] = {}
        self.ports: dict[str, int] = {}
        self.gateway: asyncio.Server | None = None

    async def start(self) -> None:
        """ledger, the gateway to it, risk, pricing, inventory: each needs the ports before."""
        if "ledger" in self.plan:
            await self._start("ledger", self.plan["ledger"])
            self.gateway = await start_gateway(self.ports["ledger"], self.fixed)
            self.ports["gateway"] = self.gateway.sockets[0].getsockname()[1]
        if "risk" in self.plan:
            await self._start("risk", self.plan["risk"], stdin_ends_it=True)
        if "pricing" in self.plan:
            gateway = self.ports.get("gateway", 9)  # no ledger: pricing logs that its posts fail
            await self._start("pricing", [*self.plan["pricing"], str(self.shop_port), str(gateway)])
        if "inventory" in self.plan:
            pricing = self.ports.get("pricing", 9)
            argv = [*self.plan["inventory"], str(self.shop_port), str(pricing)]
            await self._start("inventory", argv)

    async def _start(self, name: str, argv: list[str], stdin_ends_it: bool = False) -> None:
        try:
            service = await Service.start(name, argv, stdin_ends_it)
        except OSError as exc:
            say(f"{name} failed: did not start: {exc}")
            return
        self.services[name] = service
        try:
            self.ports[name] = await service.port()
        except Stalled as exc:
            say(f"{name} failed: did not start: {exc}")
            del self.services[name]
            await service.end()
            return
        say(f"{name} listening on port {self.ports[name]} (pid {service.proc.pid})")
        if name == "inventory":  # and its gRPC port (the demo's one gRPC hop)
            try:
                self.ports["inventory-grpc"] = int((await service.expect("GRPC ")).split()[1])
            except Stalled as exc:
                say(f"inventory serves no gRPC: {exc}")

    def has(self, *names: str) -> bool:
        return all(n in self.ports for n in names)

    async def orders(self) -> None:
        """Phase 1: the orders (see the module doc), one after the other, all from one
        thread: the agent sees that thread's program order and its threads' starts and
        joins, so whatever one order did happens before the next, and only the two writes
        inside an order stay unordered. (Awaiting an executor's future is not recorded as a
        wait: orders placed from this task through the executor would look concurrent.)"""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.place_orders, loop)
        say(f"{ORDERS} orders placed")

    def place_orders(self, loop: asyncio.AbstractEventLoop) -> None:
        for n in range(1, ORDERS + 1):
            self.place_order(n)
            if self.has("inventory", "pricing"):
                applied = self.services["inventory"].expect(f"applied price-{n}")
                asyncio.run_coroutine_threadsafe(applied, loop).result()

    def place_order(self, n: int) -> None:
        """inventory Reserve (gRPC) and pricing /quote, with ledger /settle and risk /score at the
        same time."""
        calls = []
        if self.has("ledger"):
            calls.append((self.ports["ledger"], f"/settle?order={n}", "POST"))
        if self.has("risk"):
            calls.append((self.ports["risk"], f"/score?order={n}", "GET"))
        if self.fixed:  # settle, then score: one after the other on this thread
            for c in calls:
                call(*c)
            calls = []
        threads = [
            threading.Thread(target=call, args=c, name=f"order-{n}-{c[1][1:].split('?')[0]}")
            for c in calls
        ]
        for t in threads:
            t.start()
        if self.has("inventory-grpc"):
            reserve(self.ports["inventory-grpc"], n)
        elif self.has("inventory"):
            call(self.ports["inventory"], f"/reserve?order={n}")
        if self.has("pricing"):
            call(self.ports["pricing"], f"/quote?order={n}")
        for t in threads:
            t.join()

    async def deadlock(self) -> bool:
        """Phase 2: the cycle through Python, Go and Node; True once it holds."""
        if not self.has("inventory", "pricing"):
            say("deadlock skipped: it runs through inventory (Go) and pricing (Node)")
            return False
        inventory, pricing = self.services["inventory"], self.services["pricing"]
        go_port, node_port = self.ports["inventory"], self.ports["pricing"]
        held, call_a = threading.Event(), threading.Event()

        def checkout() -> None:
            with cart_lock:
                held.set()
                call_a.wait()
                try:
                    call(go_port, "/a")
                except Exception:  # the services ended: stay stuck, as the cycle left it
                    never.wait()

        def stuck_call(port: int, path: str) -> None:
            try:
                call(port, path)
            except Exception:
                never.wait()

        # Threads of their own, so that the story names them: checkout, and the two calls
        # that start the other holders.
        t1 = threading.Thread(target=checkout, name="checkout", daemon=True)
        t2 = threading.Thread(target=stuck_call, args=(go_port, "/b"), name="restock", daemon=True)
        t3 = threading.Thread(
            target=stuck_call, args=(node_port, "/d"), name="reprice", daemon=True
        )
        t1.start()
        await self._wait(held, "checkout never took cart_lock")
        t3.start()  # pricing /d takes priceTable and calls /hold, which waits for cart_lock
        await pricing.expect("node-d-holding")
        await self._wait(hold_arrived, "/hold never arrived")
        t2.start()  # inventory /b takes inventory and calls pricing /c, which waits
        await inventory.expect("go-b-holding")
        await pricing.expect("node-c-waiting")
        call_a.set()  # checkout, holding cart_lock, calls inventory /a, which waits
        await inventory.expect("go-a-waiting")
        for t in (t1, t2, t3):
            await asyncio.to_thread(t.join, STUCK_S / 3)
        if not all(t.is_alive() for t in (t1, t2, t3)):
            say("a request of the cycle finished: no deadlock this time")
            return False
        say("deadlocked: checkout (python) -> inventory (go) -> pricing (nodejs) -> shop")
        return True

    @staticmethod
    async def _wait(event: threading.Event, why: str) -> None:
        if not await asyncio.to_thread(event.wait, SIGNAL_TIMEOUT_S):
            raise Stalled(why)

    def say_ended(self) -> None:
        """Name each service that ended on its own (a crash): the runner fails the demo."""
        for name, service in self.services.items():
            if service.proc.returncode is not None:
                say(f"{name} failed: ended by itself with status {service.proc.returncode}")

    async def stop(self, deadlocked: bool, server: ThreadingHTTPServer) -> None:
        """End every service; each stores its recording as it ends.

        Consumers end before what they consume from: inventory polls the shop's work queue,
        so it ends while the shop still records (a poll the shop answered after its agent
        stopped would be a request with no receiver in the recording).

        After the deadlock, ending a service ends the cycle's waits of its peers (a call
        fails, a request's connection goes away), which their agents would record. So the
        shop's own agent stops first, pricing is frozen (SIGSTOP: its sockets stay open, and
        what it recorded is already on disk, flushed every 50 ms), inventory ends (its agent
        stores the Go tracer's last data), and the frozen pricing is killed, as one kills a
        hung process. Before its agent stops, the shop closes its listening socket and
        lets the work-queue requests it accepted finish: inventory's consumer, still
        polling, is then refused (a failed call, not a lost receiver)."""
        if deadlocked:
            server.shutdown()
            server.server_close()
            in_flight.wait_idle()
            willowisp.stop()
            self.services["pricing"].proc.send_signal(signal.SIGSTOP)
            await self.services["inventory"].end()
            self.services["pricing"].proc.kill()
        for name in ("inventory", "pricing", "ledger", "risk"):
            if name in self.services:
                await self.services[name].end()
        if self.gateway is not None:
            self.gateway.close()


async def main(plan: dict[str, list[str]], fixed: bool = False) -> None:
    """Run the shop and leave: exit status 0, or 1 when it stopped early."""
    server = ShopServer(("127.0.0.1", 0), ShopHandler)
    threading.Thread(target=server.serve_forever, name="shop-http", daemon=True).start()
    shop = Shop(plan, int(server.server_address[1]), fixed)
    deadlocked = False
    status = 0
    try:
        await shop.start()
        await shop.orders()
        if not fixed:
            deadlocked = await shop.deadlock()
    except (Stalled, OSError) as exc:
        say(f"stopped early: {exc}")
        shop.say_ended()
        status = 1
    finally:
        await shop.stop(deadlocked, server)
    sys.stdout.flush()
    # Stuck threads (the deadlock, or a call a stalled service never answers) never end,
    # and asyncio.run would join the executor's: leave at once (the Python agent flushes
    # its recording on os._exit).
    os._exit(status)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1]), sys.argv[2:] == ["fixed"]))
