"""``willowisp view``: the server and its API on a real recorded run (two processes over
HTTP, then a deadlock between two threads whose names are markup), and the page in a real
headless Chromium: lanes and arrows drawn, a finding selected and stepped through, the three
time modes, and hostile strings that stay inert."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from willowisp.view.store import open_view
from wispkit import record_until_blocked, tgkill

PROGRAM = Path(__file__).parent / "programs" / "hostile_shop.py"
HOSTILE = "<script>alert(1)</script>\"'&<img src=x onerror=alert(2)>"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One recorded run: front → back over HTTP three times, then two threads deadlock."""
    out = tmp_path_factory.mktemp("view") / "run"
    service = {"WILLOWISP_SERVICE": f"shop {HOSTILE}"}
    record_until_blocked(PROGRAM, out, ["ledger_lock", "audit_lock"], env=service)
    return out


@pytest.fixture(scope="module")
def server(run: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``willowisp view RUN`` in its own process; yields it and the URL it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "willowisp", "view", str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+/\?token=\S+", line)
    assert match, line + (proc.stderr.read() if proc.stderr else "")
    yield proc, match.group(0)
    proc.terminate()
    assert proc.wait(timeout=30) == 0
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def get(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        conn.close()


def token_of(url: str) -> str:
    return urlsplit(url).query.removeprefix("token=")


def test_view_columns_keep_causal_order_in_every_mode(run: Path) -> None:
    """Lanes per unit grouped by process; the HTTP hops are request/reply edges across the
    two processes; the causal levels put every edge's destination after its source and each
    unit's events in program order; adjusted time respects every certain edge."""
    data, bad = open_view([run], use_cache=False)
    assert bad == []
    meta = data.meta
    services = {g["service"] for g in meta["groups"]}
    assert len(meta["groups"]) == 2 and all(s.startswith("shop ") for s in services)
    kinds = [meta["edge_kinds"][k - 1] for k in data.edge_kind.tolist()]
    cross = [
        i
        for i, k in enumerate(kinds)
        if k in ("request", "reply") and data.proc[data.edge_src[i]] != data.proc[data.edge_dst[i]]
    ]
    assert len(cross) >= 6  # three requests and three replies
    causal = data.times["causal"]
    assert (causal[data.edge_dst] > causal[data.edge_src]).all()
    lanes = data.lane_of_event
    rows = np.flatnonzero(lanes >= 0)
    by_lane = rows[np.lexsort((rows, lanes[rows]))]
    same = lanes[by_lane][1:] == lanes[by_lane][:-1]
    assert (np.diff(causal[by_lane])[same] > 0).all()
    adjusted = data.times["adjusted"]
    certain = data.edge_conf >= 1.0
    assert (adjusted[data.edge_dst[certain]] >= adjusted[data.edge_src[certain]]).all()
    (deadlock,) = [f for f in meta["findings"] if f["kind"] == "deadlock"]
    names = {meta["lanes"][lane]["name"] for lane in deadlock["lanes"]}
    assert names == {f"{HOSTILE} one", f"{HOSTILE} other"}


def test_api_answers_only_this_viewer(server: tuple[subprocess.Popen[str], str]) -> None:
    _, url = server
    port = urlsplit(url).port
    tok = token_of(url)
    status, body, headers = get(url, f"/api/meta?token={tok}")
    assert status == 200
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert json.loads(body)["schema"] == "willowisp.view/1"
    assert get(url, "/api/meta?token=wrong")[0] == 403
    assert get(url, "/api/meta")[0] == 403
    assert get(url, f"/?token={tok}", {"Host": f"evil.example:{port}"})[0] == 403
    assert get(url, f"/api/meta?token={tok}", {"Origin": "http://evil.example"})[0] == 403
    assert get(url, f"/api/meta?token={tok}", {"Origin": f"http://localhost:{port}"})[0] == 200
    status, body, _ = get(url, f"/api/tiles?token={tok}&mode=nope")
    assert status == 400 and b"mode" in body
    assert get(url, f"/api/tiles?token={tok}&lanes=1,x")[0] == 400
    assert get(url, f"/api/tiles?token={tok}&t0=5&t1=5")[0] == 400
    assert get(url, f"/api/edge?token={tok}&row=999999999")[0] == 400
    assert get(url, f"/api/meta?token={tok}&pad={'x' * 5000}")[0] == 414
    assert get(url, f"/static/../server.py?token={tok}")[0] == 404


def test_tiles_are_screen_sized(server: tuple[subprocess.Popen[str], str]) -> None:
    """Runs cover at most the requested pixels; a blocked state shows for the deadlocked
    threads; edges come with their provenance."""
    _, url = server
    tok = token_of(url)
    meta = json.loads(get(url, f"/api/meta?token={tok}")[1])
    (deadlock,) = [f for f in meta["findings"] if f["kind"] == "deadlock"]
    lanes = ",".join(str(x) for x in deadlock["lanes"])
    status, body, _ = get(url, f"/api/tiles?token={tok}&mode=adjusted&px=300&lanes={lanes}")
    assert status == 200
    tile = json.loads(body)
    for runs in tile["runs"]:
        assert all(0 <= runs[k] and runs[k] + runs[k + 1] <= 300 for k in range(0, len(runs), 3))
        assert 6 in runs[2::3]  # blocked
    edges = json.loads(get(url, f"/api/tiles?token={tok}&px=300")[1])["edges"]
    row = edges[6]
    edge = json.loads(get(url, f"/api/edge?token={tok}&row={row}")[1])
    assert edge["provenance"] and edge["src"]["id"] and edge["dst"]["id"]
    found = json.loads(get(url, f"/api/search?token={tok}&q=ledger_lock")[1])
    assert set(deadlock["lanes"]) <= set(found["lanes"])


def _chromium_page(url: str):  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1400, "height": 700})
    return pw, browser, page


def _settled(page, mode: str) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector(f"body[data-idle='1'][data-mode='{mode}']", state="attached")


COUNT_COLOURS = """() => {
  const c = document.getElementById("canvas");
  const img = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  const counts = {};
  for (let i = 0; i < img.length; i += 4) {
    const key = img[i] + "," + img[i + 1] + "," + img[i + 2];
    counts[key] = (counts[key] || 0) + 1;
  }
  return counts;
}"""


def _colours(page) -> dict[tuple[int, int, int], int]:  # type: ignore[no-untyped-def]
    """How many canvas pixels have each colour (read from the canvas itself)."""
    counts = page.evaluate(COUNT_COLOURS)
    out: dict[tuple[int, int, int], int] = {}
    for key, n in counts.items():
        r, g, b = (int(v) for v in key.split(","))
        out[(r, g, b)] = n
    return out


def _hex(colour: str) -> tuple[int, int, int]:
    return (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))


BLOCKED, RUNNING, ALIVE, REQUEST = _hex("#f85149"), _hex("#3fb950"), _hex("#343c46"), "#f0b429"


def test_viewer_in_chromium(server: tuple[subprocess.Popen[str], str], tmp_path: Path) -> None:
    """Open the viewer, see lanes and arrows, select the deadlock and step through it,
    switch time modes; the hostile names never run (no dialog, one script element) and
    show as text."""
    _, url = server
    pw, browser, page = _chromium_page(url)
    dialogs: list[str] = []
    errors: list[str] = []

    def on_dialog(d) -> None:  # type: ignore[no-untyped-def]
        dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(url)
        _settled(page, "adjusted")
        page.screenshot(path=str(tmp_path / "all.png"))
        colours = _colours(page)
        assert colours.get(ALIVE, 0) > 500  # lanes of living units
        assert colours.get(BLOCKED, 0) > 0  # the deadlocked threads, at the very end
        assert colours.get(_hex(REQUEST), 0) > 20  # request arrows between the services
        items = page.locator("#findings li")
        texts = items.all_text_contents()
        assert any(t.startswith("deadlock") for t in texts)
        deadlock = next(i for i, t in enumerate(texts) if t.startswith("deadlock"))
        items.nth(deadlock).click()
        _settled(page, "adjusted")
        page.screenshot(path=str(tmp_path / "finding.png"))
        steps = page.locator("#steps li").all_text_contents()
        assert any("ledger_lock" in s for s in steps) and any("audit_lock" in s for s in steps)
        assert page.locator("#steps li.on").count() == 1
        page.keyboard.press("n")
        assert page.locator("#steps li").nth(1).get_attribute("class") == "on"
        status = page.locator("#status").text_content() or ""
        assert "2 lanes" in status  # focused on the finding's two threads
        assert _colours(page).get(BLOCKED, 0) > 100
        for key, mode in (("3", "causal"), ("1", "raw"), ("2", "adjusted")):
            page.keyboard.press(key)
            _settled(page, mode)
            page.screenshot(path=str(tmp_path / f"{mode}.png"))
            assert _colours(page).get(BLOCKED, 0) > 100, mode
        page.keyboard.press("Escape")
        page.fill("#search", "ledger_lock")
        page.wait_for_selector("#detail:has-text('lanes match')")
        assert page.locator("script").count() == 1
        assert page.locator("img").count() == 0
        assert HOSTILE in (page.locator("#steps").text_content() or "")
    finally:
        browser.close()
        pw.stop()
    assert dialogs == [] and errors == []


@pytest.mark.parametrize("what", ["missing", "empty-folder", "empty-file"])
def test_view_of_nothing_readable_exits_two_without_a_server(tmp_path: Path, what: str) -> None:
    """No readable input: the error line, exit 2, no URL printed and no server left running."""
    path = tmp_path / "nosuch"
    if what == "empty-folder":
        path.mkdir()
    elif what == "empty-file":
        path = tmp_path / "zero.wtrace"
        path.write_bytes(b"")
    done = subprocess.run(
        [sys.executable, "-m", "willowisp", "view", str(path), "--no-cache"],
        capture_output=True,
        text=True,
        timeout=120,  # a server would never exit: the bound turns that into a failure
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "open http" not in done.stdout
    assert f"willowisp view: {path}: " in done.stderr
    assert "nothing to show" in done.stderr
    assert "Traceback" not in done.stderr
    if what == "missing":  # validated first: no "loading… building the view" before the error
        assert "loading" not in done.stderr and "building" not in done.stderr, done.stderr


def test_sigterm_to_a_server_thread_stops_the_viewer(run: Path) -> None:
    """A SIGTERM the kernel hands to one of the viewer's server threads still stops it at
    once (its main thread wakes to run the handler)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "willowisp", "view", str(run)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and "open http://" in proc.stdout.readline()
        others = [int(t) for t in os.listdir(f"/proc/{proc.pid}/task") if int(t) != proc.pid]
        assert others
        tgkill(proc.pid, max(others), signal.SIGTERM)
        proc.communicate(timeout=20)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
