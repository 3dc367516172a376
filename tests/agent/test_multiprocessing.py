"""multiprocessing children (fork, spawn, Pool workers, the resource tracker) are processes
linked to the program that started them and named after their Process."""

from __future__ import annotations

import re

from tracekit import ProcessTrace, read_run, run_program, wait_for

from willowisp.analysis import analyze_paths

# Every start method the agent links, one Process of each, then a spawn Pool; each child
# appends to one file while the parent does too, before anything orders them: a real race.
PROGRAM = """
import multiprocessing as mp, sys

def work(q, path):
    with open(path, "a") as f:
        f.write(mp.current_process().name + "\\n")
    q.put(mp.current_process().name)

def run(method, name, path):
    ctx = mp.get_context(method)
    q = ctx.Queue()
    p = ctx.Process(target=work, args=(q, path), name=name)
    p.start()
    with open(path, "a") as f:
        f.write("parent\\n")
    print(q.get(), flush=True)
    p.join()

if __name__ == "__main__":
    run("fork", "child-fork", sys.argv[1])
    run("spawn", "child-spawn", sys.argv[1])
    pool = mp.get_context("spawn").Pool(2)
    print(pool.map(abs, [-1, -2, -3]), flush=True)
    pool.close()  # not terminate(): it may kill a worker before it runs as the Process
    pool.join()
"""


def _record(tmp_path) -> tuple[str, str]:
    out = str(tmp_path / "run")
    shared = str(tmp_path / "shared.txt")
    r = run_program(PROGRAM, out, args=[shared], timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == ["child-fork", "child-spawn"], r.stdout
    # The resource tracker outlives the program by a moment (it ends when the program's end
    # closes its pipe): read the run once every process in it has ended.
    wait_for(lambda: _all_ended(out, 6), what="the six processes to end")
    return out, shared


def _all_ended(out: str, count: int) -> bool:
    pids = [p.process["pid"] for p in read_run(out).values()]
    return len(pids) == count and all(_ended(pid) for pid in pids)


def _ended(pid: int) -> bool:
    """Gone, or a zombie nobody reaped yet (an orphan's reaper may be slow or absent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _first_unit_name(pt: ProcessTrace) -> str:
    return str(pt.units[min(pt.units)]["name"])


def test_every_child_is_linked_and_named(tmp_path):
    """Fork, spawn and Pool children and the resource tracker link to the parent by
    proc.spawn/proc.start, carry its service and are named after their Process."""
    out, _ = _record(tmp_path)
    procs = list(read_run(out).values())
    parent = next(p for p in procs if not p.process["parent_process_id"])
    children = [p for p in procs if p is not parent]
    names = sorted(_first_unit_name(c) for c in children)
    workers = [n for n in names if re.fullmatch(r"SpawnPoolWorker-\d+", n)]
    others = ["child-fork", "child-spawn", "multiprocessing.resource_tracker"]
    assert len(workers) == 2 and sorted(set(names) - set(workers)) == others, names
    spawns = {r["span_id"]: r["name"] for r in parent.resources.values() if r["kind"] == "spawn"}
    for child in children:
        name = _first_unit_name(child)
        assert child.process["parent_process_id"] == parent.process["process_id"], name
        assert child.process["service"] == parent.process["service"] == "prog", name
        assert child.process["process_id"] != parent.process["process_id"]
        start = next(r for r in child.resources.values() if r["kind"] == "spawn")
        assert any(e.kind == "proc.start" for e in child.events), name
        launched = spawns[start["parent_span_id"]]
        assert launched == f"multiprocessing {name.replace('multiprocessing.', '')}", name


def test_resource_tracker_is_the_runtimes_own(tmp_path):
    """The resource tracker's unit is listed in its process record's runtime_units."""
    out, _ = _record(tmp_path)
    tracker = next(
        p
        for p in read_run(out).values()
        if _first_unit_name(p) == "multiprocessing.resource_tracker"
    )
    assert str(min(tracker.units)) in str(tracker.process["runtime_units"]).split(",")


def test_analyze_links_children_and_finds_the_race(tmp_path):
    """analyze shows one linked process hop per child and the unordered writes of the parent
    and its children to one file as a race across processes."""
    out, shared = _record(tmp_path)
    doc = analyze_paths([out]).document()
    hops = [h for h in doc["hops"] if h["protocol"] == "process"]
    assert [(h["from"]["service"], h["to"]["service"], h["count"], h["linked"]) for h in hops] == [
        ("prog", "prog", 5, 5)
    ]
    races = [
        f
        for f in doc["findings"]
        if f["kind"] == "race" and any(r["name"] == f"file:{shared}" for r in f["resources"])
    ]
    assert races, [f["summary"] for f in doc["findings"]]
    pids = {u["pid"] for f in races for u in f["units"]}
    assert len(pids) >= 2, races


def test_forkserver_child_links_through_the_forkserver(tmp_path):
    """A forkserver child is named after its Process and linked to the forkserver, which is
    linked to the program and marked the runtime's own."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import multiprocessing as mp

        def work(q):
            q.put(mp.current_process().name)

        if __name__ == "__main__":
            ctx = mp.get_context("forkserver")
            q = ctx.Queue()
            p = ctx.Process(target=work, args=(q,), name="child-fs")
            p.start()
            print(q.get(), flush=True)
            p.join()
        """,
        out,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    wait_for(lambda: _all_ended(out, 4), what="the four processes to end")
    by_name = {_first_unit_name(p): p.process for p in read_run(out).values()}
    program = next(p for p in by_name.values() if not p["parent_process_id"])
    server = by_name["multiprocessing.forkserver"]
    assert server["parent_process_id"] == program["process_id"]
    assert server["runtime_units"]
    assert by_name["child-fs"]["parent_process_id"] == server["process_id"]
