"""Wire codecs: cost of one hop (inject into a fresh header dict, then extract from it).

Not a test: prints figures and ratios against baselines measured in the same run:
  - a bare dict lookup + str.split of a traceparent (the least any reader can do), and
  - the original ``traceparent.parse`` on a dict lookup (what the agent's HTTP hook does).
Target: <= 2 us per hop for W3C.

Usage: python bench/bench_wire.py [--number N] [--repeat R]
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from typing import Any

from willowisp.wire.b3 import B3_MULTI, B3_SINGLE, B3Context
from willowisp.wire.baggage import BAGGAGE_CODEC, Baggage, BaggageMember
from willowisp.wire.carriers import HttpHeaders, KafkaHeaders
from willowisp.wire.env import EnvCarrier
from willowisp.wire.jaeger import JAEGER, JaegerContext
from willowisp.wire.tracecontext import TRACECONTEXT, W3CContext
from willowisp.wire.traceparent import TraceContext, parse
from willowisp.wire.tracestate import parse_tracestate
from willowisp.wire.xray import XRAY, XRayContext

CTX = TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1)
TP = CTX.header()


def hop(codec: Any, value: Any, make: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        carrier = make()
        codec.inject(value, carrier)
        codec.extract(carrier)

    return run


def baseline_split() -> None:
    headers = {"traceparent": TP}
    headers["traceparent"].split("-")


def baseline_parse() -> None:
    headers = {"traceparent": TP}
    parse(headers.get("traceparent"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--number", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    def http() -> HttpHeaders:
        return HttpHeaders({})

    cases: list[tuple[str, Callable[[], None]]] = [
        ("baseline: dict + split", baseline_split),
        ("baseline: dict + traceparent.parse", baseline_parse),
        ("w3c traceparent (http)", hop(TRACECONTEXT, W3CContext(CTX), http)),
        (
            "w3c + tracestate(2) (http)",
            hop(TRACECONTEXT, W3CContext(CTX, parse_tracestate(["a=1,b=2"])), http),
        ),
        ("w3c traceparent (kafka)", hop(TRACECONTEXT, W3CContext(CTX), lambda: KafkaHeaders([]))),
        ("w3c traceparent (env)", hop(TRACECONTEXT, W3CContext(CTX), lambda: EnvCarrier({}))),
        ("b3 single", hop(B3_SINGLE, B3Context.of(CTX), http)),
        ("b3 multi", hop(B3_MULTI, B3Context.of(CTX), http)),
        ("jaeger", hop(JAEGER, JaegerContext(CTX), http)),
        ("x-ray", hop(XRAY, XRayContext.of(CTX), http)),
        (
            "baggage (2 members)",
            hop(
                BAGGAGE_CODEC,
                Baggage((BaggageMember("user", "alice"), BaggageMember("node", "DF 28"))),
                http,
            ),
        ),
    ]
    base = 0.0
    print(f"{'per hop':40s} {'us':>8s} {'x dict+split':>13s}")
    for name, fn in cases:
        best = min(timeit.repeat(fn, number=args.number, repeat=args.repeat)) / args.number
        us = best * 1e6
        if not base:
            base = us
        print(f"{name:40s} {us:8.3f} {us / base:13.1f}")


if __name__ == "__main__":
    main()
