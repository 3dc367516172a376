"""``willowisp demo``: a small polyglot shop with seeded concurrency bugs, built and run with
the toolchains this machine has, recorded by every agent and analyzed (docs/demo.md).

runner.py drives it (build, record, analyze, print); build.py builds the Go, Node, Java and
Rust services from the checkout's demo/ folder; shop.py is the asyncio orchestrator that
runs under the agents, with gateway.py its header-dropping edge gateway; watch.py tells
when a recording shows a unit blocked on a resource (tests use it).
"""
