"""What a QA pass found in ``willowisp view``, each checked on a real recorded run (threads
whose names carry bidi overrides, Hebrew and 6,000 characters race on a record, then
deadlock), through the real server and, where it is about the page, in headless Chromium:
story steps circle their own event, a finding's lanes cover its events, trace strings are
escaped, isolated and shortened, a click pins the detail, the server's headers and methods
match docs/view.md's Security section, and the keys do what they say."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tests.view.test_view import _chromium_page, _settled, get, token_of

from willowisp.ingest import load
from willowisp.view import details
from willowisp.view.model import _finding
from willowisp.view.server import ViewServer
from willowisp.view.store import open_view
from wispkit import record_until_blocked

PROGRAM = Path(__file__).parent / "programs" / "bidi_names.py"
BIDI = ("\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bidi") / "run"
    record_until_blocked(PROGRAM, out, ["ledger_lock", "audit_lock"])
    return out


@pytest.fixture(scope="module")
def server(run: Path) -> Iterator[str]:
    """``willowisp view RUN`` in its own process; yields the URL it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "willowisp", "view", str(run), "--no-cache"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+/\?token=\S+", line)
    assert match, line + (proc.stderr.read() if proc.stderr else "")
    yield match.group(0)
    proc.terminate()
    assert proc.wait(timeout=30) == 0
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _meta(url: str) -> dict[str, Any]:
    status, body, _ = get(url, f"/api/meta?token={token_of(url)}")
    assert status == 200
    meta: dict[str, Any] = json.loads(body)
    return meta


def _finding_of(meta: dict[str, Any], kind: str) -> tuple[int, dict[str, Any]]:
    return next((i, f) for i, f in enumerate(meta["findings"]) if f["kind"] == kind)


def _request(url: str, method: str, path: str) -> tuple[int, dict[str, str]]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, body=b"x" if method in ("POST", "PUT") else None)
        r = conn.getresponse()
        r.read()
        return r.status, dict(r.getheaders())
    finally:
        conn.close()


def _secure(headers: dict[str, str]) -> None:
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in headers["Content-Security-Policy"]


# -- the API --------------------------------------------------------------------------


def test_each_story_step_names_its_own_event(server: str) -> None:
    """The deadlock's steps pair with events of the right kind at the step's own place;
    lines with no event of their own (the ending) pair with none."""
    meta = _meta(server)
    _, deadlock = _finding_of(meta, "deadlock")
    assert len(deadlock["steps"]) == len(deadlock["explanation"])
    paired = 0
    for line, ks in zip(deadlock["explanation"], deadlock["steps"], strict=True):
        if not ks:
            assert "acquired" not in line and "waits for lock" not in line, line
            continue
        (k,) = ks
        ev = deadlock["events"][k]
        want = "lock.acquired" if " acquired lock " in line else "unit.block"
        assert ev["kind"] == want, (line[:80], ev)
        assert f" at {ev['where']}" in line and ev["resource"].split()[-1] in line
        paired += 1
    assert paired == 4  # two acquisitions, two waits


def test_a_findings_lanes_cover_its_events(server: str, run: Path) -> None:
    """The race's third event (the main thread starting a writer) is on a lane that is not
    one of the race's units: the lane is listed all the same."""
    meta = _meta(server)
    for f in meta["findings"]:
        assert {e["lane"] for e in f["events"]} <= set(f["lanes"]), f["kind"]
    _, race = _finding_of(meta, "race")
    main = [e["lane"] for e in race["events"] if meta["lanes"][e["lane"]]["name"] == "MainThread"]
    assert main and main[0] in race["lanes"]
    # a finding that names no unit and no event gets no lanes (the page then says so)
    trace = load([run])
    empty = _finding(trace, {"id": "F-0", "kind": "dropped-context"}, {}, None, {}, {})  # type: ignore[arg-type]
    assert empty["lanes"] == [] and empty["events"] == [] and empty["steps"] == []


def test_trace_strings_are_escaped_and_shortened(server: str) -> None:
    """Bidi controls arrive spelled out (``\\u202e``), right-to-left names isolated, and a
    6,000-character name cut to about 600 with the count; search still finds its tail."""
    meta = _meta(server)
    names = [lane["name"] for lane in meta["lanes"]]
    text = json.dumps(meta, ensure_ascii=False)
    assert not any(c in text for c in BIDI[:-1])
    assert any(n.startswith("\u2068\\u202eevil\\u202c") and n.endswith("\u2069") for n in names)
    long = [n for n in names if n.startswith("LLLL")]
    assert long and all(len(n) < 700 and "characters left out" in n for n in long)
    tok = token_of(server)
    found = json.loads(get(server, f"/api/search?token={tok}&q=needle-at-the-end")[1])
    assert {names.index(n) for n in long} <= set(found["lanes"])


def test_search_matches_a_resources_protocol_and_library(tmp_path: Path) -> None:
    """A request resource is named ``rpc GET /price``; its library (urllib) matches too."""
    from tests.view.test_view import PROGRAM as SHOP

    run = tmp_path / "run"
    record_until_blocked(SHOP, run, ["ledger_lock", "audit_lock"])
    data, _ = open_view([run], use_cache=False)
    assert "urllib" not in " ".join(data.strings["resources"])
    hits = details.search(data, "URLLIB")
    assert hits["lanes"] and details.search(data, "http.server")["lanes"]
    assert details.search(data, "no-such-thing-anywhere")["lanes"] == []


def test_server_matches_its_security_section(server: str) -> None:
    """Static files need the token too; every answer is no-store/nosniff/CSP; any method
    but GET and HEAD is a plain 405 with the same headers; an unparsable request too."""
    tok = token_of(server)
    for name in ("view.js", "view.css"):
        assert get(server, f"/static/{name}")[0] == 403
        status, _, headers = get(server, f"/static/{name}?token={tok}")
        assert status == 200
        _secure(headers)
    status, page, headers = get(server, f"/?token={tok}")
    _secure(headers)
    assert f'src="/static/view.js?token={tok}"'.encode() in page
    assert f'href="/static/view.css?token={tok}"'.encode() in page
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        status, headers = _request(server, method, f"/api/meta?token={tok}")
        assert status == 405, method
        assert headers["Allow"] == "GET, HEAD"
        assert headers["Content-Type"] == "application/json"
        _secure(headers)
    parts = urlsplit(server)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        s.sendall(b"NONSENSE\r\n\r\n")
        answer = s.recv(65536).decode("latin-1")
    assert answer.startswith("HTTP/1.") and " 400 " in answer.split("\r\n")[0]
    assert "no-store" in answer and "nosniff" in answer and "<html" not in answer.lower()


# -- the page ---------------------------------------------------------------------------


def _open(url: str):  # type: ignore[no-untyped-def]
    pw, browser, page = _chromium_page(url)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    _settled(page, "adjusted")
    return pw, browser, page, errors


def _select(page, index: int) -> None:  # type: ignore[no-untyped-def]
    page.locator("#findings li").nth(index).click()
    _settled(page, page.evaluate("document.body.dataset.mode"))


def _in_view(page) -> str:  # type: ignore[no-untyped-def]
    return (page.locator("#status").text_content() or "").split(" · ")[1]


def test_stepping_circles_the_steps_event(server: str) -> None:
    meta = _meta(server)
    index, deadlock = _finding_of(meta, "deadlock")
    pw, browser, page, errors = _open(server)
    try:
        _select(page, index)
        for k, evs in enumerate(deadlock["steps"]):
            assert len(evs) <= 1  # a deadlock's step is one event or none
            ev = evs[0] if evs else None
            if k:
                page.keyboard.press("n")
            assert page.locator("#steps li").nth(k).get_attribute("class") == "on"
            # the circle follows once the step's view is drawn: wait for it (a signal, not
            # a sleep), then check the panel says what it circles
            want = "" if ev is None else deadlock["events"][ev]["id"]
            page.wait_for_function(
                "(id) => (document.body.dataset.circled || '') === id", arg=want, timeout=10_000
            )
            panel = page.locator("#step-event").text_content() or ""
            if ev is None:
                assert "nothing is circled" in panel
            else:
                event = deadlock["events"][ev]
                assert event["kind"] in panel and event["id"] in panel
    finally:
        browser.close()
        pw.stop()
    assert errors == []


def test_page_shows_names_inert_escaped_and_isolated(server: str) -> None:
    pw, browser, page, errors = _open(server)
    try:
        _, deadlock = _finding_of(_meta(server), "deadlock")
        _select(page, _finding_of(_meta(server), "deadlock")[0])
        body = page.evaluate("document.body.innerText")
        assert not any(c in body for c in BIDI[:-1])
        assert "\\u202eevil\\u202c" in body
        assert "characters left out" in body
        assert page.evaluate("document.documentElement.dir") == "ltr"
        assert page.locator("#findings li bdi").count() == len(_meta(server)["findings"])
        longest = max(len(t) for t in page.locator("#steps li").all_text_contents())
        assert longest < 2 * 700  # a step names two units at most, each cut to ~600
        assert len(deadlock["explanation"]) == page.locator("#steps li").count()
    finally:
        browser.close()
        pw.stop()
    assert errors == []


def test_selecting_a_finding_clears_the_search_and_keys_behave(server: str) -> None:
    """Selecting a finding clears an active search; Esc in the box only leaves it; Space
    after clicking a mode button does not press it again; `f` and the fit button agree;
    a click on a lane pins its detail."""
    meta = _meta(server)
    index, race = _finding_of(meta, "race")
    pw, browser, page, errors = _open(server)
    try:
        page.fill("#search", "needle-at-the-end")
        page.wait_for_selector("#detail:has-text('lanes match')")
        _select(page, index)
        assert page.input_value("#search") == ""
        page.wait_for_timeout(0)
        status = page.locator("#status").text_content() or ""
        assert f"{len(race['lanes'])} lanes" in status
        page.locator("#search").focus()
        page.keyboard.press("Escape")
        assert page.locator("#findings li.on").count() == 1
        assert page.locator("#story").is_visible()
        page.keyboard.press("f")
        _settled(page, "adjusted")
        fitted = _in_view(page)
        page.keyboard.press("-")
        page.keyboard.press("-")
        _settled(page, "adjusted")
        assert _in_view(page) != fitted
        page.click("#fit")
        _settled(page, "adjusted")
        assert _in_view(page) == fitted
        page.click("[data-mode='raw']")
        _settled(page, "raw")
        page.keyboard.press("2")
        _settled(page, "adjusted")
        page.keyboard.press(" ")
        assert page.locator("[data-mode].on").get_attribute("data-mode") == "adjusted"
        page.keyboard.press("f")  # a later key proves Space was handled (or ignored) first
        _settled(page, "adjusted")
        box = page.locator("#canvas").bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + 250 + (box["width"] - 250) / 2, box["y"] + 26 + 20 + 10)
        page.wait_for_selector("#detail:has-text('at the click')")
        assert (page.locator("#detail").text_content() or "").count("(thread)") == 1
    finally:
        browser.close()
        pw.stop()
    assert errors == []


def test_a_finding_with_no_events_says_so(run: Path) -> None:
    """Served in-process with one extra finding built the way every finding is, naming no
    unit and no event: selecting it says so and shows every lane."""
    data, _ = open_view([run], use_cache=False)
    trace = load([run])
    doc = {"id": "F-000000", "kind": "dropped-context", "summary": "nothing to point at"}
    data.meta["findings"].append(
        _finding(trace, doc, {}, data.lane_of_event, data.times, data.meta["base"])
    )
    srv = ViewServer(data, 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    pw = browser = None
    try:
        pw, browser, page, errors = _open(srv.url)
        _select(page, len(data.meta["findings"]) - 1)
        note = page.locator("#story-note")
        assert note.is_visible()
        assert "no event" in (note.text_content() or "")
        assert "every lane is shown" in (note.text_content() or "")
        status = page.locator("#status").text_content() or ""
        assert f"{len(data.meta['lanes'])} lanes" in status
        assert errors == []
    finally:
        if browser is not None and pw is not None:
            browser.close()
            pw.stop()
        srv.shutdown()
        srv.server_close()
