"""The cost of a hand-off with boundaries on: runs JavaHandOffCost (bench/) with no agent,
with the agent in hops mode without boundaries, and with a boundary on POST /bench (its
GET rounds are outside the instance, its POST rounds inside), REPEATS JVMs each,
interleaved; prints per configuration and method the median and min ns per hand-off over
all rounds but each JVM's first, and the ratio of medians to the no-agent baseline.

    python bench/bench_java_handoffs.py JAR [N] [ROUNDS] [REPEATS] [JAVA]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    jar = sys.argv[1]
    n, rounds, repeats = (
        int(a) for a in (sys.argv[2:5] + ["20000", "8", "3"][len(sys.argv[2:5]) :])
    )
    java = sys.argv[5] if len(sys.argv) > 5 else "java"
    javac = str(Path(java).with_name("javac")) if "/" in java else "javac"
    classes = Path(tempfile.mkdtemp())
    subprocess.run([javac, "-d", str(classes), str(HERE / "JavaHandOffCost.java")], check=True)
    configs = {
        "no agent": None,
        "hops, no boundary": {"WILLOWISP_MODE": "hops"},
        "hops, boundary": {
            "WILLOWISP_MODE": "hops",
            "WILLOWISP_BOUNDARIES": "entry=http:POST /bench",
        },
    }
    got: dict[tuple[str, str, str], list[int]] = {}
    for _ in range(repeats):
        for name, extra in configs.items():
            env = {k: v for k, v in os.environ.items() if not k.startswith("WILLOWISP_")}
            env.pop("JAVA_TOOL_OPTIONS", None)
            with tempfile.TemporaryDirectory() as out:
                if extra is not None:
                    env.update(extra, JAVA_TOOL_OPTIONS=f"-javaagent:{jar}", WILLOWISP_OUT=out)
                    env["WILLOWISP_CONTROL"] = "off"
                done = subprocess.run(
                    [java, "-cp", str(classes), "JavaHandOffCost", str(n), str(rounds)],
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=600,
                    check=True,
                )
            for line in done.stdout.splitlines():
                r, where, method, ns = line.split()
                if int(r) > 0:
                    got.setdefault((name, where, method), []).append(int(ns))
    base = {(w, m): statistics.median(v) for (c, w, m), v in got.items() if c == "no agent"}
    head = ("configuration", "where", "method", "median ns", "min ns", "vs base")
    print("{:20} {:8} {:14} {:>10} {:>8} {:>8}".format(*head))
    for (c, w, m), v in sorted(
        got.items(), key=lambda kv: (kv[0][2], kv[0][1], list(configs).index(kv[0][0]))
    ):
        med = statistics.median(v)
        print(f"{c:20} {w:8} {m:14} {med:10.0f} {min(v):8d} {med / base[(w, m)]:8.2f}x")


if __name__ == "__main__":
    main()
