"""A finding's story in ``willowisp view``, in headless Chromium on real runs: every name
the trace supplied sits in a ``<bdi>`` of its own inside a story line (a right-to-left name
cannot reorder the analysis's words around it), and a step that tells of two events (a
clock-skew step citing a request in one process and its reply in another) circles both,
panning or zooming until both are on screen."""

from __future__ import annotations

import re
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tests.view.test_view import _chromium_page, _settled
from tests.view.test_view_qa import PROGRAM as BIDI_PROGRAM
from tests.view.test_view_qa import _finding_of, _meta

from golden.tracetext import WALL0, chunk, process, run_folder
from willowisp.view import story
from wispkit import record_until_blocked

# What the page shows of each story line: the texts of its <bdi> elements, and its text
# with them taken out (the analysis's own words).
LINE_PARTS = """() => [...document.querySelectorAll("#steps li")].map((li) => {
  const outside = li.cloneNode(true);
  outside.querySelectorAll("bdi").forEach((b) => b.remove());
  return {
    names: [...li.querySelectorAll("bdi")].map((b) => b.textContent),
    nested: li.querySelectorAll("bdi bdi").length,
    outside: outside.textContent,
  };
})"""

SHALOM = "\u05e9\u05dc\u05d5\u05dd"  # Hebrew: a right-to-left word
FIXED = ("acquired lock", "waits for lock", "held by", "(pid ")


@contextmanager
def _viewer(run: Path) -> Iterator[str]:
    """``willowisp view RUN`` in its own process; yields the URL it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "willowisp", "view", str(run), "--no-cache"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+/\?token=\S+", line)
        assert match, line + (proc.stderr.read() if proc.stderr else "")
        yield match.group(0)
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def _page(url: str) -> Iterator[Any]:
    pw, browser, page = _chromium_page(url)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(url)
        _settled(page, "adjusted")
        yield page
    finally:
        browser.close()
        pw.stop()
    assert errors == []


def _right_to_left(text: str) -> bool:
    return any(unicodedata.bidirectional(ch) in ("R", "AL") for ch in text)


def test_each_name_in_a_story_line_is_isolated_on_its_own(tmp_path: Path) -> None:
    """Threads named with a right-to-left override and Hebrew (and one of 6,000 characters)
    deadlock: in every step each unit's name is a <bdi> of its own, exactly as its lane is
    named; no <bdi> holds two names or any of the analysis's words, and nothing outside
    one holds a right-to-left letter or a piece of a name."""
    run = tmp_path / "run"
    record_until_blocked(BIDI_PROGRAM, run, ["ledger_lock", "audit_lock"])
    with _viewer(run) as url:
        meta = _meta(url)
        index, deadlock = _finding_of(meta, "deadlock")
        lane_names = {meta["lanes"][lane]["name"] for lane in deadlock["lanes"]}
        flip = next(n for n in lane_names if "evil" in n)
        long = next(n for n in lane_names if n.startswith("LLLL"))
        with _page(url) as page:
            page.locator("#findings li").nth(index).click()
            _settled(page, "adjusted")
            lines = page.evaluate(LINE_PARTS)
    assert len(lines) == len(deadlock["explanation"])
    named: set[str] = set()
    for line in lines:
        assert line["nested"] == 0
        outside = line["outside"]
        assert not _right_to_left(outside), outside
        assert "evil" not in outside and "LLLL" not in outside and "needle" not in outside
        for name in line["names"]:
            assert not ("evil" in name and "LLLL" in name), name  # one name per <bdi>
            assert not any(words in name for words in FIXED), name
        named.update(line["names"])
    assert {flip, long} <= named  # each name whole, spelled as its lane is
    words = " ".join(line["outside"] for line in lines)
    assert all(w in words for w in FIXED), words
    assert {"ledger_lock", "audit_lock"} <= named


def _skewed_run(folder: Path) -> Path:
    """Client and server on two machines, the server's clock 5 ms ahead, one request
    bracketed within 0.1 ms (as tests/analysis/test_clock_findings.py makes one)."""
    latency, skew = 100_000, 5_000_000
    ids = f'trace_id="{"1" * 32}" '
    client = chunk(
        process("c1", 1, "client", run_root=1),
        f"ev 0 clock.anchor a={WALL0}",
        f'rec resource 1 kind="rpc" {ids}span_id="{"a" * 16}" method="GET" target="/x" '
        'protocol="http"',
        "ev 1000000 msg.send u=1 r=1",
        "ev 1000100 unit.block u=1 r=1 a=7",
        f"ev {1000000 + 2 * latency + 50_000} rpc.response u=1 r=1 a=200",
    )
    server = chunk(
        process("s1", 2, "server", boot="other"),
        f"ev 0 clock.anchor a={WALL0 + skew}",
        f'rec resource 1 kind="rpc" {ids}span_id="{"b" * 16}" parent_span_id="{"a" * 16}" '
        'method="GET" target="/x"',
        f"ev {1000000 + latency} msg.recv u=1 r=1",
        f"ev {1000000 + latency + 50_000} rpc.reply u=1 r=1 a=200",
    )
    return run_folder(folder, client=client, server=server)


def _circled(page) -> str:  # type: ignore[no-untyped-def]
    return str(page.evaluate("document.body.dataset.circled || ''"))


# White pixels (only the step's rings are white) per row of the timeline, below its axis:
# which lanes have a ring drawn on them, read from the canvas itself.
WHITE_ROWS = """() => {
  const c = document.getElementById("canvas");
  const scale = c.width / c.clientWidth;
  const img = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  const rows = {};
  for (let i = 0; i < img.length; i += 4) {
    if (img[i] !== 255 || img[i + 1] !== 255 || img[i + 2] !== 255) continue;
    const y = Math.floor(i / 4 / c.width) / scale;
    if (y < 26) continue;
    const row = Math.floor((y - 26) / 20);
    rows[row] = (rows[row] || 0) + 1;
  }
  return rows;
}"""


@pytest.mark.parametrize("mode", ["raw", "adjusted"])
def test_a_clock_skew_step_circles_both_of_its_events(tmp_path: Path, mode: str) -> None:
    """Zoomed in far, stepping to each step that cites a request and its reply (one event
    in each process) brings both on screen and circles both; a step citing none circles
    nothing."""
    run = _skewed_run(tmp_path / "run")
    with _viewer(run) as url:
        meta = _meta(url)
        index, skew = _finding_of(meta, "clock-skew")
        pairs = [k for k, evs in enumerate(skew["steps"]) if len(evs) == 2]
        assert len(pairs) == 2  # the request and the reply that bracket the offset
        for k in pairs:
            lanes = {skew["events"][e]["lane"] for e in skew["steps"][k]}
            assert len(lanes) == 2  # one event in each process
        with _page(url) as page:
            page.locator("#findings li").nth(index).click()
            _settled(page, "adjusted")
            page.keyboard.press({"raw": "1", "adjusted": "2"}[mode])
            _settled(page, mode)
            page.wait_for_function("() => (document.body.dataset.circled || '') === ''")
            for _ in range(8):  # 1/256 of the finding's span: one event at most in view
                page.keyboard.press("+")
            _settled(page, mode)
            for k in range(1, max(pairs) + 1):
                page.keyboard.press("n")
                evs = skew["steps"][k]
                want = " ".join(skew["events"][e]["id"] for e in evs)
                page.wait_for_function(
                    "(ids) => (document.body.dataset.circled || '') === ids", arg=want,
                    timeout=10_000,
                )  # fmt: skip
                panel = page.locator("#step-event").text_content() or ""
                if evs:
                    _settled(page, mode)
                    rings = page.evaluate(WHITE_ROWS)
                    assert len([n for n in rings.values() if n > 10]) == 2, rings  # both drawn
                    assert all(skew["events"][e]["id"] in panel for e in evs)
                else:
                    assert "nothing is circled" in panel
                    assert _circled(page) == ""


def test_story_parts_take_whole_names_longest_first() -> None:
    """A name is found only as a word of its own (``one`` is not in ``someone``, nor
    ``Thread-1`` in ``Thread-10``); a word with a right-to-left letter that no listed name
    covers is isolated all the same; control characters are spelled out."""
    line = f"Thread-1 (pid 7, shop\x1b) waits for someone, held by Thread-10 and one {SHALOM}."
    (got,) = story.parted([line], {"Thread-1", "Thread-10", "shop\x1b", "one", "absent"})
    assert got == [
        {"name": "Thread-1"},
        {"text": " (pid 7, "},
        {"name": "shop\\x1b"},
        {"text": ") waits for someone, held by "},
        {"name": "Thread-10"},
        {"text": " and "},
        {"name": "one"},
        {"text": " "},
        {"name": f"\u2068{SHALOM}.\u2069"},
    ]


def test_a_step_gets_every_event_it_names_and_only_those() -> None:
    """By raw wall time or by a place only one event has; a place two events share names
    neither; kinds told one event per step pair by position."""
    places = ["a.py:1", "b.py:2", "c.py:3", "c.py:3"]
    walls = ["12:00:00.000001", "12:00:00.000002", "12:00:00.000003", "12:00:00.000004"]
    lines = [
        "x at a.py:1 and y at b.py:2",
        "at 12:00:00.000003 raw and 12:00:00.000004 raw",
        "z at c.py:3",
        "a.py:12 and 112:00:00.000001 name nothing",
    ]
    assert story.step_events("leak", lines, places, walls) == [[0, 1], [2, 3], [], []]
    assert story.step_events("deadlock", lines, places, walls) == [[0], [1], [2], [3]]
    assert story.step_events("race", lines, places[:2], walls[:2]) == [[0], [1], [], []]
