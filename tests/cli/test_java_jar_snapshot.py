"""``willowisp run`` hands a JVM a snapshot of the Java agent's jar, never Maven's build
output, which a rebuild rewrites in place under the JVM reading it (SIGBUS in libzip)."""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import pytest

from willowisp.runtimes import KEEP_SNAPSHOTS, SNAPSHOT_IDLE_S, java_tool_options, stable_jar


def _jar(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("META-INF/MANIFEST.MF", f"Manifest-Version: 1.0\nX-Build: {content}\n")
    return path


def _bump(path: Path, content: str, step: int) -> None:
    """Rewrite the jar in place, as Maven does, with a distinct modification time."""
    _jar(path, content)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + step * 1_000_000_000))


def test_run_points_the_jvm_at_a_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = _jar(tmp_path / "agents" / "java" / "target" / "willowisp-agent.jar", "one")
    monkeypatch.setenv("WILLOWISP_JAVA_AGENT", str(built))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    options = java_tool_options("-Xmx64m")
    assert options.startswith("-Xmx64m -javaagent:")
    snapshot = Path(options.split("-javaagent:", 1)[1])
    assert snapshot != built and snapshot.is_relative_to(tmp_path / "cache" / "willowisp")
    assert snapshot.read_bytes() == built.read_bytes()
    # once: a nested run sees its own option and adds nothing
    assert java_tool_options(options) == options
    # a rebuild rewrites the build output; the snapshot the JVM reads is untouched
    before = snapshot.read_bytes()
    _bump(built, "two", 1)
    assert snapshot.read_bytes() == before
    fresh = Path(java_tool_options("").split("-javaagent:", 1)[1])
    assert fresh != snapshot and fresh.read_bytes() == built.read_bytes()


def test_old_snapshots_are_pruned_and_no_temporary_is_left(tmp_path: Path) -> None:
    """Past the newest few, snapshots no run used for SNAPSHOT_IDLE_S go; one used lately
    stays (a JVM of another session may be about to open it)."""
    built = _jar(tmp_path / "target" / "willowisp-agent.jar", "0")
    cache = str(tmp_path / "cache")
    idle = time.time() - SNAPSHOT_IDLE_S - 60
    made = [stable_jar(built, cache)]
    for i in range(1, KEEP_SNAPSHOTS + 3):
        for k, snap in enumerate(made):  # every earlier one idle for over an hour, in order
            if snap.parent.exists():
                os.utime(snap.parent, (idle + k, idle + k))
        _bump(built, str(i), i)
        made.append(stable_jar(built, cache))
    root = tmp_path / "cache" / "willowisp" / "java-agent"
    left = sorted(p.name for p in root.iterdir())
    assert len(left) == KEEP_SNAPSHOTS
    assert made[-1].parent.name in left and made[0].parent.name not in left
    assert not list(root.rglob(".tmp-*"))


def test_a_snapshot_used_lately_is_kept(tmp_path: Path) -> None:
    built = _jar(tmp_path / "target" / "willowisp-agent.jar", "0")
    cache = str(tmp_path / "cache")
    first = stable_jar(built, cache)
    for i in range(1, KEEP_SNAPSHOTS + 3):
        _bump(built, str(i), i)
        stable_jar(built, cache)
    assert first.is_file()  # made moments ago: another run may be starting with it


def test_a_jar_caught_mid_build_is_used_as_it_is(tmp_path: Path) -> None:
    """Not a zip yet (Maven still writing): no snapshot is made of it."""
    half = tmp_path / "target" / "willowisp-agent.jar"
    half.parent.mkdir()
    half.write_bytes(b"PK\x03\x04 half a jar")
    assert stable_jar(half, str(tmp_path / "cache")) == half
    root = tmp_path / "cache" / "willowisp" / "java-agent"
    assert not [p for p in root.rglob("*") if p.is_file()]


def test_an_unwritable_cache_falls_back_to_the_jar(tmp_path: Path) -> None:
    built = _jar(tmp_path / "target" / "willowisp-agent.jar", "x")
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder would be")
    assert stable_jar(built, str(blocker)) == built
