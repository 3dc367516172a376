"""An orchestrator and three services, each a real process, for the wire scenario.

Roles (argv[1]):
  quote    an aiohttp service: GET /quote and GET /legacy; prints "ready PORT"
  stock    a grpcio service: /shop.Stock/Reserve (bytes in, bytes out); prints "ready PORT"
  ledger   a RabbitMQ consumer (pika) of queue "ledger": acks 3 messages, then exits
  orchestrate AMQP_PORT   starts the three, calls each 3 times (aiohttp client, grpc, pika
           publish), and once calls /legacy through a "proxy" that drops traceparent
"""

import asyncio
import http.client
import os
import subprocess
import sys

ROLE = sys.argv[1]


def quote() -> None:
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        return web.Response(text="42")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/quote", handle)
        app.router.add_get("/legacy", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"ready {port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def stock() -> None:
    import grpc

    def reserve(request: bytes, context: object) -> bytes:
        return b"reserved:" + request

    handler = grpc.method_handlers_generic_handler(
        "shop.Stock", {"Reserve": grpc.unary_unary_rpc_method_handler(reserve)}
    )
    server = grpc.server(__import__("concurrent.futures").futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"ready {port}", flush=True)
    server.wait_for_termination()


def ledger(amqp_port: int) -> None:
    import pika

    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp_port))
    ch = conn.channel()
    ch.queue_declare("ledger")
    print("ready 0", flush=True)
    seen = 0
    for method, _props, _body in ch.consume("ledger", inactivity_timeout=30):
        if method is None:
            break
        ch.basic_ack(method.delivery_tag)
        seen += 1
        if seen == 3:
            break
    ch.cancel()
    conn.close()


class DroppingProxy(http.client.HTTPConnection):
    """What a header-filtering proxy does: the request leaves with traceparent injected and
    arrives without it."""

    def send(self, data: bytes) -> None:  # type: ignore[override]
        if isinstance(data, bytes):
            lines = data.split(b"\r\n")
            data = b"\r\n".join(x for x in lines if not x.lower().startswith(b"traceparent:"))
        super().send(data)


def start(*args: str) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "WILLOWISP_SERVICE": args[0]}  # each role is its own service
    p = subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, env=env
    )
    assert p.stdout is not None
    return p, int(p.stdout.readline().split()[-1])


def orchestrate(amqp_port: int) -> None:
    import aiohttp
    import grpc
    import pika

    quote_p, quote_port = start("quote")
    stock_p, stock_port = start("stock")
    ledger_p, _ = start("ledger", str(amqp_port))
    try:

        async def quotes() -> list[str]:
            async with aiohttp.ClientSession() as s:
                out = []
                for _ in range(3):
                    async with s.get(f"http://127.0.0.1:{quote_port}/quote") as r:
                        out.append(await r.text())
                return out

        assert asyncio.run(quotes()) == ["42"] * 3
        with grpc.insecure_channel(f"127.0.0.1:{stock_port}") as channel:
            reserve = channel.unary_unary("/shop.Stock/Reserve")
            for i in range(3):
                assert reserve(b"sku-%d" % i, timeout=30) == b"reserved:sku-%d" % i
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", amqp_port))
        ch = conn.channel()
        ch.queue_declare("ledger")
        for i in range(3):
            ch.basic_publish(
                "", "ledger", b"entry-%d" % i, pika.BasicProperties(message_id=f"entry-{i}")
            )
        conn.close()
        legacy = DroppingProxy("127.0.0.1", quote_port, timeout=30)
        legacy.request("GET", "/legacy")
        assert legacy.getresponse().read() == b"42"
        assert ledger_p.wait(timeout=60) == 0
        print("shop done", flush=True)
    finally:
        for p in (quote_p, stock_p, ledger_p):
            if p.poll() is None:
                p.terminate()
            p.wait(timeout=30)


if __name__ == "__main__":
    {"quote": quote, "stock": stock}.get(ROLE, lambda: None)()
    if ROLE == "ledger":
        ledger(int(sys.argv[2]))
    elif ROLE == "orchestrate":
        orchestrate(int(sys.argv[2]))
