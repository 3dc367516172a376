"""report.html: real runs recorded by the real agent, written by `willowisp analyze --html`,
read back with html.parser (and, where Debian's chromium is installed, by a real browser)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from willowisp.display import clip
from willowisp.report.html_markup import text
from willowisp.report.html_report import render, write_report
from wispkit import record_until_blocked

SCENARIOS = Path(__file__).parents[1] / "scenarios" / "programs"
PROGRAMS = Path(__file__).parent / "programs"
# The hostile program is copied under this name: its locks are named after the file.
HOSTILE_FILE = "<svg onload=alert(5)>&\"'.py"
HOSTILE_SERVICE = "<img src=x onerror=alert(4)>"
HOSTILE_THREAD = "<script>alert(1)</script>"


def wisp(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "willowisp", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


class Page(HTMLParser):
    """Everything the tests look at: tags with their attributes, text by enclosing tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.texts: list[tuple[tuple[str, ...], str]] = []
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in ("meta", "br", "line", "rect", "circle", "path", "i", "link"):
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data: str) -> None:
        self.texts.append((tuple(self.stack), data))

    def ids(self) -> set[str]:
        return {str(a["id"]) for _, a in self.tags if a.get("id")}

    def all_text(self) -> str:
        return "".join(d for _, d in self.texts)

    def with_class(self, tag: str, cls: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and cls in (a.get("class") or "").split()]


def parse(html_text: str) -> Page:
    page = Page()
    page.feed(html_text)
    page.close()
    return page


def section(html_text: str, anchor: str) -> str:
    """The markup of the element with id ``anchor`` (an <article> or <section>)."""
    start = html_text.index(f'id="{anchor}"')
    start = html_text.rindex("<", 0, start)
    tag = html_text[start + 1 : html_text.index(" ", start)]
    end = html_text.index(f"</{tag}>", start)
    return html_text[start : end + len(tag) + 3]


@pytest.fixture(scope="module")
def deadlock_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bank") / "run"
    record_until_blocked(SCENARIOS / "bank_threads.py", out, ["checking_lock", "savings_lock"])
    return out


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("hostile")
    program = where / HOSTILE_FILE
    shutil.copy(PROGRAMS / "hostile_names.py", program)
    lines = program.read_text().splitlines()
    locks = [
        f"lock@{HOSTILE_FILE}:{n}"
        for n, line in enumerate(lines, 1)
        if line.startswith("LOCKS.append(")
    ]
    env = dict(os.environ, WILLOWISP_SERVICE=HOSTILE_SERVICE)
    record_until_blocked(program, where / "run", locks, env=env)
    return where / "run"


def analyze_with_html(run: Path, html_path: Path, *extra: str) -> tuple[dict[str, Any], str]:
    r = wisp("analyze", str(run), "--format", "json", "--html", str(html_path), *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), html_path.read_text(encoding="utf-8")


def test_deadlock_report_has_findings_lanes_and_clocks(deadlock_run: Path, tmp_path: Path) -> None:
    """The deadlock's id is an anchor; its explanation, source locations, one SVG lane per
    unit and the clock table's rows are on the page, and nothing is fetched or run."""
    doc, page_text = analyze_with_html(deadlock_run, tmp_path / "report.html", "--no-cache")
    page = parse(page_text)
    [dl] = [f for f in doc["findings"] if f["kind"] == "deadlock"]
    assert dl["id"] in page.ids()
    assert ("a", {"href": f"#{dl['id']}"}) in page.tags

    article = parse(section(page_text, dl["id"]))
    items = [d for tags, d in article.texts if tags and tags[-1] == "li"]
    assert items == dl["explanation"]
    body = article.all_text()
    for where in (
        "bank_threads.py:13",
        "bank_threads.py:15",
        "bank_threads.py:20",
        "bank_threads.py:22",
        "bank_threads.py:7",
        "bank_threads.py:8",
    ):
        assert where in body, where
    lanes = {a["data-unit"] for a in article.with_class("g", "lane")}
    assert lanes == {u["id"] for u in dl["units"]}
    assert article.with_class("rect", "blocked"), "no blocked state drawn"
    assert article.with_class("line", "waits"), "no waits-for link drawn"
    assert len(article.with_class("g", "mark")) == len(dl["events"])
    lane_names = [d for tags, d in article.texts if tags[-2:] == ("g", "text")]
    assert {"to-savings", "to-checking"} <= set(lane_names)

    clocks = parse(section(page_text, "clocks"))
    rows = [d for tags, d in clocks.texts if tags[-2:] == ("tr", "td")]
    for d in doc["clocks"]:
        assert d["id"] in rows
    assert "reference" in rows
    summary = parse(section(page_text, "trace")).all_text()
    assert "bank_threads" in summary and "python" in summary
    assert all(t != "script" for t, _ in page.tags)
    assert not [a for t, a in page.tags if t in ("img", "link", "iframe") or a.get("src")]
    assert any(
        a.get("http-equiv") == "Content-Security-Policy"
        and "default-src 'none'" in str(a["content"])
        for t, a in page.tags
        if t == "meta"
    )


def test_report_from_the_cached_analysis_still_draws_lanes(
    deadlock_run: Path, tmp_path: Path
) -> None:
    """A second analyze reads its document from the cache; the report's lanes come from the
    trace loaded again, so the page is the same."""
    doc1, first = analyze_with_html(deadlock_run, tmp_path / "a.html")
    doc2, second = analyze_with_html(deadlock_run, tmp_path / "b.html")
    assert doc1 == doc2
    assert first == second
    assert parse(second).with_class("g", "lane")


def test_hostile_names_stay_inert(hostile_run: Path, tmp_path: Path) -> None:
    """Thread, lock, data and service names carrying <script>, quotes, & and control
    characters: no tag or attribute comes from them, and they read back as text."""
    doc, page_text = analyze_with_html(hostile_run, tmp_path / "report.html", "--no-cache")
    kinds = {f["kind"] for f in doc["findings"]}
    assert {"deadlock", "race"} <= kinds
    assert "<script" not in page_text.lower()
    assert "<img" not in page_text.lower() and "<svg onload" not in page_text.lower()
    page = parse(page_text)
    allowed = {
        "html", "head", "meta", "title", "style", "body", "header", "main", "footer", "nav",
        "section", "article", "h1", "h2", "h3", "h4", "p", "ul", "ol", "li", "a", "span",
        "strong", "code", "table", "thead", "tbody", "tr", "th", "td", "i", "svg", "defs",
        "marker", "path", "g", "text", "rect", "line", "circle",
    }  # fmt: skip
    assert {t for t, _ in page.tags} <= allowed
    for tag, attrs in page.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        assert "href" not in attrs or str(attrs["href"]).startswith("#"), attrs
    body = page.all_text()
    assert HOSTILE_THREAD in body
    assert HOSTILE_SERVICE in body
    assert "<script>alert('data')</script> & \"quoted\" 'single'" in body
    assert f"lock@{HOSTILE_FILE}:" in body
    assert "\\x1b[2J\\x07" in body and "\x1b" not in page_text and "\x07" not in page_text
    assert "characters left out" in body  # the 5,000-character name is clipped
    assert len(page_text) < 400_000
    [dl] = [f for f in doc["findings"] if f["kind"] == "deadlock"]
    lanes = {a["data-unit"] for a in parse(section(page_text, dl["id"])).with_class("g", "lane")}
    assert lanes == {u["id"] for u in dl["units"]}


def test_document_alone_renders_without_timelines(deadlock_run: Path, tmp_path: Path) -> None:
    """Without the trace (a JSON document only) the page keeps findings and tables and
    says why there are no timelines; write_report writes it whole."""
    r = wisp("analyze", str(deadlock_run), "--format", "json")
    doc = json.loads(r.stdout)
    path = write_report(tmp_path / "sub" / "doc.html", doc)
    page = parse(path.read_text(encoding="utf-8"))
    assert {f["id"] for f in doc["findings"]} <= page.ids()
    assert not page.with_class("g", "lane")
    assert "need the trace itself" in page.all_text()
    assert render(doc) == path.read_text(encoding="utf-8")


def test_html_to_an_unwritable_path_is_one_line_and_exit_2(deadlock_run: Path) -> None:
    """--html into a folder that cannot be created: one stderr line naming it, exit 2."""
    r = wisp("analyze", str(deadlock_run), "--html", "/proc/no/such/report.html")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "--html /proc/no/such/report.html" in r.stderr
    assert "Traceback" not in r.stderr


def test_markup_helpers_escape_and_clip() -> None:
    """Escaping covers both quotes and &; control characters are spelled out; long
    strings keep their head and tail."""
    assert text('<a href="x">&\'') == "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;"
    assert text("\x1b[31m\x00") == "\\x1b[31m\\x00"
    long = "a" * 1000 + "END"
    out = clip(long, 300)
    assert out.startswith("a" * 200) and out.endswith("END") and "left out" in out
    assert clip(long, 30) == "a" * 20 + "…" + "a" * 6 + "END"


# -- a real browser ---------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _browser() -> Any:
    """Playwright's sync API driving Debian's chromium (scripts/test installs both; a
    machine without them fails here rather than skipping the browser check)."""
    assert os.path.exists(CHROMIUM), "Debian's chromium is not installed (apt-get install chromium)"
    import playwright.sync_api

    return playwright.sync_api


def _pixels(png: bytes) -> Iterator[tuple[int, int, int]]:
    """The RGB pixels of an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, data, width = 8, b"", 0
    channels = 3
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, chunk = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, _, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and colour in (2, 6)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            data += chunk
        pos += 12 + length
    raw = zlib.decompress(data)
    stride = width * channels
    prev = bytearray(stride)
    for row in range(len(raw) // (stride + 1)):
        f = raw[row * (stride + 1)]
        line = bytearray(raw[row * (stride + 1) + 1 : (row + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        for x in range(width):
            yield line[x * channels], line[x * channels + 1], line[x * channels + 2]
        prev = line


def test_browser_draws_lanes_and_no_dialog_fires(
    deadlock_run: Path, hostile_run: Path, tmp_path: Path
) -> None:
    """Headless Chromium opens both reports: the deadlock's timeline shows running and
    blocked lanes in its pixels, and the hostile names fire no dialog and load nothing."""
    sync_api = _browser()
    _, _ = analyze_with_html(deadlock_run, tmp_path / "bank.html", "--no-cache")
    doc, _ = analyze_with_html(hostile_run, tmp_path / "hostile.html", "--no-cache")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1150, "height": 900})
            dialogs: list[str] = []
            requests: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("request", lambda r: requests.append(r.url))
            page.goto((tmp_path / "bank.html").as_uri())
            shot = page.locator("svg.timeline").first.screenshot()
            (tmp_path / "bank-timeline.png").write_bytes(shot)
            colours = set(_pixels(shot))
            assert (0x4C, 0xAF, 0x50) in colours, "no running lane drawn"
            assert (0xD3, 0x2F, 0x2F) in colours, "no blocked lane drawn"
            page.goto((tmp_path / "hostile.html").as_uri())
            [dl] = [f for f in doc["findings"] if f["kind"] == "deadlock"]
            page.goto((tmp_path / "hostile.html").as_uri() + "#" + dl["id"])
            page.screenshot(path=str(tmp_path / "hostile.png"), full_page=True)
            assert page.locator("svg.timeline g.lane").count() >= 2
            assert page.evaluate("document.querySelectorAll('script, img, iframe').length") == 0
            assert dialogs == []
            assert all(u.startswith("file://") for u in requests), requests
        finally:
            browser.close()


@pytest.fixture(scope="module")
def rpc_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rpc") / "run"
    env = dict(os.environ, WILLOWISP_SERVICE="orders")
    # Each process flushes on its own: wait until the trace shows all three waits.
    waits = ["state_lock", "POST /price", "POST /reserve"]
    record_until_blocked(PROGRAMS / "rpc_deadlock.py", out, waits, env=env)
    return out


def test_cross_process_deadlock_lanes_show_peers_and_requests(
    rpc_run: Path, tmp_path: Path
) -> None:
    """A deadlock through two HTTP calls: lanes from both processes, the callers drawn
    waiting on a peer, the request edges drawn as arrows, the lock holder linked."""
    doc, page_text = analyze_with_html(rpc_run, tmp_path / "report.html", "--no-cache")
    [dl] = [f for f in doc["findings"] if f["kind"] == "deadlock"]
    assert {u["service"] for u in dl["units"]} == {"orders", "stock"}
    article = parse(section(page_text, dl["id"]))
    lanes = {a["data-unit"] for a in article.with_class("g", "lane")}
    assert lanes == {u["id"] for u in dl["units"]}
    assert len(article.with_class("rect", "waiting")) >= 2
    assert article.with_class("rect", "blocked")
    titles = [d for tags, d in article.texts if tags[-2:] == ("line", "title")]
    titles += [d for tags, d in article.texts if tags[-1:] == ("title",)]
    assert any(t.startswith("request:") and "evidence: wire-header" in t for t in titles), titles
    assert any("waits for lock state_lock, held by MainThread" in t for t in titles), titles
    body = article.all_text()
    source = (PROGRAMS / "rpc_deadlock.py").read_text().splitlines()
    call = 1 + next(n for n, line in enumerate(source) if "urlopen(url" in line)
    take = 1 + next(n for n, line in enumerate(source) if "with state_lock:" in line)
    assert f"rpc_deadlock.py:{call} in Stock.do_POST" in body
    assert f"rpc_deadlock.py:{take} in Orders.do_POST" in body
    clocks = parse(section(page_text, "clocks"))
    rows = [d for tags, d in clocks.texts if tags[-2:] == ("tr", "td")]
    assert {c["id"] for c in doc["clocks"]} <= set(rows) and "simulated" in rows
    [stock] = [c for c in doc["clocks"] if c["simulated"]]
    assert f"+{stock['offset_ns'] / 1e6:.3f} ms" in rows
    skew = [f for f in doc["findings"] if f["kind"] in ("clock-skew", "false-causality")]
    assert skew and all(f["id"] in page_text for f in skew)
    hops = parse(section(page_text, "hops")).all_text()
    assert "orders (python)" in hops and "stock (python)" in hops and "transit" in hops


def test_wide_deadlock_draws_at_most_the_lane_cap_and_says_so(tmp_path: Path) -> None:
    """Sixteen threads in a ring: twelve lanes are drawn and the page says four were
    left out; the finding's other facts are all there."""
    from willowisp.report.html_timeline import MAX_LANES

    out = tmp_path / "run"
    # Every lock of the ring has the same name (the agent's, from where it was made).
    record_until_blocked(PROGRAMS / "ring_deadlock.py", out, ["lock@ring_deadlock.py:14"], count=16)
    doc, page_text = analyze_with_html(out, tmp_path / "report.html", "--no-cache")
    [dl] = [f for f in doc["findings"] if f["kind"] == "deadlock"]
    assert len(dl["units"]) == 16
    article = parse(section(page_text, dl["id"]))
    assert len(article.with_class("g", "lane")) == MAX_LANES
    assert f"{16 - MAX_LANES} more units not drawn" in article.all_text()
    names = {d for tags, d in article.texts if tags[-2:] == ("td", "span") or tags[-1] == "td"}
    assert {f"philosopher-{i}" for i in range(16)} <= names
