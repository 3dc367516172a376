"""Helpers for tests that write small traces in the text twin (see docs/format.md)."""

from __future__ import annotations

from pathlib import Path

from willowisp.analysis import Analysis, analyze_paths
from willowisp.wtrace.text import from_text
from willowisp.wtrace.writer import write_file

WALL0 = 1_700_000_000_000_000_000


def process(
    pid_hex: str,
    pid: int,
    service: str,
    *,
    boot: str = "boot-1",
    host: str = "h",
    sim: int = 0,
    run_root: int = 0,
    fake: str = "",
) -> str:
    """A ``process`` record line; ``pid_hex`` is padded to a 32-digit process id."""
    return (
        f'rec process 0 process_id="{pid_hex.ljust(32, "0")}" pid={pid} host="{host}" '
        f'service="{service}" runtime="python" boot_id="{boot}" time_ns="time:[1]" '
        f'fake_time="{fake}" simulated_offset_ns={sim} run_root={run_root} segment=1'
    )


def chunk(*lines: str, seq: int = 1) -> str:
    """One chunk: records first, then events (lines starting with ``ev``)."""
    recs = [x for x in lines if not x.startswith("ev ")]
    evs = [x for x in lines if x.startswith("ev ")]
    body = ["chunk", *recs]
    if evs:
        body += [f"seq {seq}", *evs]
    return "\n".join([*body, "end"])


def write_trace(path: Path, *chunks: str) -> Path:
    write_file(path, from_text("wtrace 1.0\n" + "\n".join(chunks) + "\n", str(path)))
    return path


def run_folder(folder: Path, **files: str | tuple[str, ...]) -> Path:
    """Write ``name.wtrace`` per keyword (one chunk text or a tuple of chunks)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, chunks in files.items():
        write_trace(folder / f"{name}.wtrace", *((chunks,) if isinstance(chunks, str) else chunks))
    return folder


def analyze_run(folder: Path, **files: str | tuple[str, ...]) -> Analysis:
    return analyze_paths([run_folder(folder, **files)])
