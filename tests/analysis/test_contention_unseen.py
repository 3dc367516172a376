"""Lock waits whose recorder sees the wait end but not the acquisition (Go's execution
tracer): acquisitions with unknown holds, never "gave up"."""

from __future__ import annotations

import io
from pathlib import Path

from analysis.test_contention import MS, _contention, _doc
from willowisp.report.text_report import render_text


def test_an_ok_wake_on_the_lock_is_an_unseen_acquisition(tmp_path: Path) -> None:
    """A wait ended by unit.wake (ok) on the lock, or on no resource, took the lock: it is
    contended, timed, and has no hold; a timeout on the same lock still gave up."""
    doc = _doc(
        tmp_path,
        "ev 1000 unit.block u=2 r=1 a=1 l=2",
        f"ev {1000 + 3 * MS} unit.wake u=2 r=1 a=0",
        f"ev {1000 + 4 * MS} unit.block u=3 r=1 a=1 l=2",
        f"ev {1000 + 9 * MS} unit.wake u=3 r=0 a=0",  # no waker named: no resource
        f"ev {1000 + 10 * MS} unit.block u=4 r=1 a=1 l=2",
        f"ev {1000 + 11 * MS} unit.wake u=4 r=1 a=1",  # timed out
    )
    [entry] = doc["contention"]
    counts = ("acquisitions", "contended", "acquired_unseen", "gave_up", "still_waiting")
    assert tuple(entry[k] for k in counts) == (2, 2, 2, 1, 0)
    assert (entry["hold_ns"], entry["held_at_end"], entry["holders"]) == (None, 0, 2)
    assert entry["wait_ns"]["total"] == 9 * MS and entry["wait_ns"]["max"] == 5 * MS
    [finding] = _contention(doc)
    assert finding["summary"].endswith("2 ended with the lock taken, holds unknown, 1 gave up")
    assert finding["explanation"][0].startswith("3 waits by 3 units, 2 ended with the lock")


def test_only_unseen_acquisitions_read_as_waits_with_holds_unknown(tmp_path: Path) -> None:
    """When no acquisition was recorded at all, the finding tells waits and unknown holds,
    no share of acquisitions that waited and no convoy."""
    lines = []
    for i, u in enumerate((2, 3, 4, 2)):
        t = 1000 + i * 10 * MS
        lines += [f"ev {t} unit.block u={u} r=1 a=1 l=2", f"ev {t + 5 * MS} unit.wake u={u} r=1"]
    doc = _doc(tmp_path, *lines)
    [entry] = doc["contention"]
    assert (entry["acquired_unseen"], entry["gave_up"], entry["convoys"]) == (4, 0, 0)
    [finding] = _contention(doc)
    assert finding["summary"].endswith("each ended with the lock taken, holds unknown")
    assert finding["explanation"][0].startswith("4 waits by 3 units, each ended with the lock")
    assert "gave up" not in finding["summary"] + " ".join(finding["explanation"])
    assert "held: unknown" in " ".join(finding["explanation"])
    # the text report's row: "4 waited", not "4/4" (every acquisition waiting), holds unknown
    (row,) = [x for x in _text_rows(doc) if x.startswith("lock ")]
    assert " 4 waited " in row and "4/4" not in row and row.split()[-3] == "unknown", row


def _text_rows(doc: dict[str, object]) -> list[str]:
    """The contention table's lines of the text report."""
    out = io.StringIO()
    render_text(doc, out, color=False)
    text = out.getvalue()
    return text.split("contention (top by total wait)", 1)[1].splitlines()[2:]
