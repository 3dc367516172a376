"""What `pip install /path/to/willowisp` gives a user: the package built as a wheel from
the checkout carries the other runtimes' agents (the Node agent, the Go agent's module
source, the Java agent's jar when it was built first), and an installed copy finds them in
itself, not in a checkout: `run` hands JVMs and Node its own copies, and Go traces are
decoded with a wisp-goimport built from its own Go source."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JAR = ROOT / "agents" / "java" / "target" / "willowisp-agent.jar"

# what the wheel is built from: the package and the agents its symlinks point into
TREE = (
    "pyproject.toml", "README.md", "LICENSE", "src", "agents/go",
    "agents/node/register.js", "agents/node/index.js", "agents/node/package.json",
    "agents/node/LICENSE", "agents/node/README.md", "agents/node/lib",
    "agents/java/target/willowisp-agent.jar",
)  # fmt: skip


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the checkout (pip, as a user's install does), unpacked
    where an installed package would be."""
    assert JAR.is_file(), "the test command builds the Java agent before the tests"
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    ignore = shutil.ignore_patterns("node_modules", "__pycache__", "*.so", "build", "*.egg-info")
    for rel in TREE:
        path, dest = ROOT / rel, src / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, dest, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(path, dest)
    dist = base / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src)],
        check=True, timeout=600, capture_output=True,
    )  # fmt: skip
    [wheel] = dist.glob("willowisp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "willowisp/_node_agent/register.js",
        "willowisp/_node_agent/lib/esm_hooks.mjs",
        "willowisp/_go_agent/go.mod",
        "willowisp/_go_agent/cmd/wisp-goimport/main.go",
        "willowisp/_go_agent/wisp/recorder.go",
        "willowisp/_go_agent/wisp/auto/auto.go",
        "willowisp/_go_agent/wispgrpc/go.mod",
        "willowisp/_java_agent/willowisp-agent.jar",
        "willowisp/agent/bootstrap/sitecustomize.py",
    ):
        assert name in names, name
    site = base / "site"
    zipfile.ZipFile(wheel).extractall(site)
    return site


def test_an_installed_copy_finds_its_own_agents(installed: Path, tmp_path: Path) -> None:
    """Imported from the unpacked wheel (no checkout around it), the package finds the Node
    agent, the Go module and the Java jar inside itself, builds wisp-goimport from its own Go
    source (a user's `go` on PATH, a fresh ~/.cache) and says where the Go module is, for a
    program's `replace` directive."""
    go = shutil.which("go")
    assert go, "Go is installed on this machine"
    cache = subprocess.run(
        [go, "env", "GOMODCACHE", "GOCACHE"], capture_output=True, text=True, check=True
    )
    modcache, buildcache = cache.stdout.split()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WILLOWISP_")},
        "PYTHONPATH": str(installed),
        "HOME": str(tmp_path),  # no helper built before
        "GOMODCACHE": modcache,  # the machine's module and build caches: no download
        "GOCACHE": buildcache,
    }
    probe = (
        "import willowisp.runtimes as r, willowisp.ingest.go_helper as g\n"
        "print(r.node_register()); print(r.go_agent_dir()); print(r.java_agent_jar())\n"
        "print(g.find_helper())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=600,
        cwd=tmp_path, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    node, go_dir, jar, helper = out.stdout.split()
    pkg = installed / "willowisp"
    assert Path(node) == pkg / "_node_agent" / "register.js"
    assert Path(go_dir) == pkg / "_go_agent"
    assert Path(jar) == pkg / "_java_agent" / "willowisp-agent.jar"
    assert Path(helper).parent == tmp_path / ".cache" / "willowisp" / "bin"
    assert os.access(helper, os.X_OK)
