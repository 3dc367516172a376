"""The results cache: a second ``analyze`` (or ``query ... findings``) of unchanged inputs
reads the document back; changed inputs, damage and unwritable folders mean recomputing."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from willowisp.analysis import cache, engine
from willowisp.analysis.engine import Options, analyze
from willowisp.cli.main import main
from willowisp.ingest import load
from willowisp.query import session
from willowisp.report.json_report import render_json
from willowisp.report.text_report import render_text
from willowisp.wtrace.text import from_text
from willowisp.wtrace.writer import write_file

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "expected.json").is_file())


def build_run(case: str, out: Path) -> Path:
    out.mkdir(parents=True)
    for text in sorted((GOLDEN / case).glob("*.wtxt")):
        write_file(out / f"{text.stem}.wtrace", from_text(text.read_text(), str(text)))
    return out


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return build_run("lock_order_killed", tmp_path / "run")


class Counter:
    """Wraps engine.analyze and counts the calls (how a cache hit is proven)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = engine.analyze

        def counted(*args: object, **kwargs: object) -> engine.Analysis:
            self.calls += 1
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(engine, "analyze", counted)
        monkeypatch.setattr(session, "analyze", counted)


def analyze_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["analyze", *args])
    out, err = capsys.readouterr()
    return code, out, err


def entries(run: Path) -> list[str]:
    folder = run / cache.FOLDER
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def test_second_analyze_is_served_from_the_cache(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Same inputs, same options: no second analysis, identical output and exit status."""
    counter = Counter(monkeypatch)
    for fmt in ("json", "text"):
        first = analyze_cli(capsys, str(run_dir), "--format", fmt, "--fail-on", "deadlock")
        second = analyze_cli(capsys, str(run_dir), "--format", fmt, "--fail-on", "deadlock")
        assert first == second
        assert first[0] == 1
    assert counter.calls == 1  # the text run read what the json run stored
    assert len(entries(run_dir)) == 1


def test_no_cache_bypasses_it(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--no-cache neither reads nor writes."""
    counter = Counter(monkeypatch)
    analyze_cli(capsys, str(run_dir), "--no-cache")
    analyze_cli(capsys, str(run_dir), "--no-cache")
    assert counter.calls == 2
    assert not (run_dir / cache.FOLDER).exists()


def test_other_options_are_other_entries(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Options are part of the key, and only the newest KEEP entries stay."""
    counter = Counter(monkeypatch)
    for i in range(cache.KEEP + 2):
        analyze_cli(capsys, str(run_dir), "--boundary", f"entry=http:GET /b{i}")
    assert counter.calls == cache.KEEP + 2
    assert len(entries(run_dir)) == cache.KEEP
    analyze_cli(capsys, str(run_dir), "--boundary", f"entry=http:GET /b{cache.KEEP + 1}")
    assert counter.calls == cache.KEEP + 2  # the newest is still there


def test_changed_input_is_recomputed(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trace file replaced by another run's never gets the old document."""
    counter = Counter(monkeypatch)
    _, before, _ = analyze_cli(capsys, str(run_dir), "--format", "json")
    (trace_file,) = run_dir.glob("*.wtrace")
    stat = trace_file.stat()
    other = GOLDEN / "timeout_broken" / "worker.wtxt"
    write_file(trace_file, from_text(other.read_text(), str(other)))
    # Even with the old modification time put back, the contents decide.
    os.utime(trace_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    _, after, _ = analyze_cli(capsys, str(run_dir), "--format", "json")
    assert counter.calls == 2
    assert json.loads(after)["findings"] != json.loads(before)["findings"]
    assert after == render_json(analyze(load([run_dir])).document())


def test_added_file_is_recomputed(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A new trace file in the run changes the key."""
    counter = Counter(monkeypatch)
    analyze_cli(capsys, str(run_dir))
    other = GOLDEN / "timeout_broken" / "worker.wtxt"
    write_file(run_dir / "worker.wtrace", from_text(other.read_text(), str(other)))
    analyze_cli(capsys, str(run_dir))
    assert counter.calls == 2


@pytest.mark.parametrize(
    "damage",
    [b"", b"not zstd at all", b"\x28\xb5\x2f\xfd" + b"\x00" * 20],
    ids=["empty", "garbage", "bad-frame"],
)
def test_corrupt_entry_falls_back(
    damage: bytes,
    run_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A damaged entry is a miss: the same output, recomputed, and the entry rewritten."""
    counter = Counter(monkeypatch)
    first = analyze_cli(capsys, str(run_dir), "--format", "json")
    (name,) = entries(run_dir)
    (run_dir / cache.FOLDER / name).write_bytes(damage)
    assert analyze_cli(capsys, str(run_dir), "--format", "json") == first
    assert counter.calls == 2
    assert analyze_cli(capsys, str(run_dir), "--format", "json") == first
    assert counter.calls == 2


def test_entry_for_other_inputs_is_not_served(run_dir: Path) -> None:
    """An entry whose stored key is not its name (copied, forged) is refused."""
    where = cache.slot([run_dir], Options(), "analysis")
    assert cache.store(where, {"findings": []})
    other = cache.slot([run_dir], Options(suppress=False), "analysis")
    assert other.path is not None and where.path is not None
    os.replace(where.path, other.path)
    assert cache.load(other) is None


def test_unwritable_places_mean_no_cache(
    run_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A .wisp-cache that is a file, or a link to elsewhere, is not used or written."""
    counter = Counter(monkeypatch)
    (run_dir / cache.FOLDER).write_text("not a folder")
    expected = analyze_cli(capsys, str(run_dir), "--format", "json")
    assert analyze_cli(capsys, str(run_dir), "--format", "json") == expected
    (run_dir / cache.FOLDER).unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run_dir / cache.FOLDER).symlink_to(elsewhere)
    assert analyze_cli(capsys, str(run_dir), "--format", "json") == expected
    assert counter.calls == 3
    assert os.listdir(elsewhere) == []


def test_read_only_run_folder(run_dir: Path) -> None:
    """A run folder we may not write into is analyzed as usual, twice, and nothing is written.
    As root (CI), permissions do not stop writes: the folder is then bind-mounted read-only
    in a private mount namespace (unshare), which stops root too."""
    analyze = [sys.executable, "-m", "willowisp", "analyze", str(run_dir), "--format", "json"]
    if os.geteuid() == 0:
        assert shutil.which("unshare"), "util-linux unshare is needed (scripts/test installs it)"
        inner = shlex.join(analyze)
        script = (
            f"mount --bind {shlex.quote(str(run_dir))} {shlex.quote(str(run_dir))} && "
            f"mount -o remount,bind,ro {shlex.quote(str(run_dir))} && "
            f"touch {shlex.quote(str(run_dir / 'probe'))} 2>/dev/null && exit 99; "
            f"{inner} && {inner}"
        )
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    else:
        run_dir.chmod(0o555)
        try:
            cmd = ["sh", "-c", f"{shlex.join(analyze)} && {shlex.join(analyze)}"]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        finally:
            run_dir.chmod(0o755)
    assert r.returncode == 0, r.stderr
    decoder = json.JSONDecoder()
    first, end = decoder.raw_decode(r.stdout)
    second, _ = decoder.raw_decode(r.stdout[end:].lstrip())
    assert first == second and first["schema"] == "willowisp.findings/1"
    assert not (run_dir / cache.FOLDER).exists()
    assert "Traceback" not in r.stderr


def test_store_never_raises_where_it_cannot_write(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder that refuses the write (full disk, permissions) only means no cache."""
    where = cache.slot([run_dir], Options(), "analysis")

    def refuse(*_a: object, **_k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache.tempfile, "mkstemp", refuse)
    assert cache.store(where, {"findings": []}) is False
    assert cache.load(where) is None


def test_single_file_is_cached_beside_it_never_in_the_cwd(
    run_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """For a trace file the cache goes into the file's folder, not the working directory."""
    counter = Counter(monkeypatch)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    (trace_file,) = run_dir.glob("*.wtrace")
    first = analyze_cli(capsys, str(trace_file))
    assert analyze_cli(capsys, str(trace_file)) == first
    assert counter.calls == 1
    assert os.listdir(cwd) == []
    assert len(entries(run_dir)) == 1


def test_missing_input_still_reported_from_the_cache(
    run_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Bad inputs are named on stderr (exit 2) whether or not the cache answered."""
    counter = Counter(monkeypatch)
    missing = tmp_path / "missing.wtrace"
    first = analyze_cli(capsys, str(run_dir), str(missing))
    assert first[0] == 2 and str(missing) in first[2]
    assert analyze_cli(capsys, str(run_dir), str(missing)) == first
    assert counter.calls == 1


def test_query_findings_use_the_cache_analyze_made(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """analyze then query ... findings: one analysis; and query stores for analyze too."""
    counter = Counter(monkeypatch)
    analyze_cli(capsys, str(run_dir))
    assert main(["query", str(run_dir), "SELECT kind FROM findings", "--format", "csv"]) == 0
    assert capsys.readouterr().out == "kind\ndeadlock\n"
    assert counter.calls == 1
    other = build_run("http_callback", run_dir.parent / "other")
    assert main(["query", str(other), "SELECT count(*) FROM findings"]) == 0
    analyze_cli(capsys, str(other))
    assert counter.calls == 2


def test_cached_findings_alone_need_no_loading(
    run_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A query of findings alone, cached, never reads the trace; bad inputs still reported."""
    missing = tmp_path / "missing.wtrace"
    analyze_cli(capsys, str(run_dir), str(missing))

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("the trace was loaded")

    monkeypatch.setattr(session, "load", refuse)
    code = main(
        ["query", str(run_dir), str(missing), "SELECT kind FROM findings", "--format", "csv"]
    )
    out, err = capsys.readouterr()
    assert (code, out) == (2, "kind\ndeadlock\n")
    assert err == f"willowisp query: {missing}: no such file or directory\n"
    with pytest.raises(AssertionError, match="the trace was loaded"):
        main(["query", str(run_dir), "SELECT happens_before(events[1], events[2]) FROM findings"])


@pytest.mark.parametrize("case", CASES)
def test_cached_document_renders_identically(case: str, tmp_path: Path) -> None:
    """The document read back from its JSON renders exactly as the computed one does."""
    doc = analyze(load([build_run(case, tmp_path / "run")])).document()
    back = json.loads(json.dumps(doc))
    assert render_json(back) == render_json(doc)
    text, text_back = io.StringIO(), io.StringIO()
    render_text(doc, text, color=False)
    render_text(back, text_back, color=False)
    assert text_back.getvalue() == text.getvalue()
