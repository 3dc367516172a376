"""Building the demo shop's services with the toolchains this machine has.

Each builder returns a :class:`Service`: the command that starts it, or why it cannot run
here (no toolchain, no agent, a failed build). Nothing is ever installed but ecosystem
dependencies: Go modules, crates and npm packages go where their own tools keep them, and
the demo's builds and its npm folder under ``~/.cache/willowisp/demo/`` (``$XDG_CACHE_HOME``
is honoured). A build that is up to date costs about a second: each tool checks that itself
(``go build``, ``cargo build``), or a timestamp does (``javac``, ``npm install``).

The services' sources are the checkout's ``demo/`` folder and their agents its ``agents/``:
a Go program and a Rust program link their agent as a source dependency. An installed
package without a checkout can run only the Python part; the others say so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from willowisp.runtimes import JAVA_JAR, java_agent_jar, node_register

BUILD_TIMEOUT_S = 1500.0  # a cold cargo build of hyper and tokio on two busy cores


@dataclass(frozen=True, slots=True)
class Service:
    """One service of the shop, ready to start or not."""

    runtime: str  # the OpenTelemetry language name: go, nodejs, java, rust
    name: str  # the service name it records under
    argv: tuple[str, ...] = ()  # empty: it cannot run here, ``note`` says why
    note: str = ""  # how it was built, or why it is skipped
    env: dict[str, str] = field(default_factory=dict)  # what its process needs besides

    @property
    def ready(self) -> bool:
        return bool(self.argv)


def checkout() -> Path | None:
    """The repository this package runs from (with ``demo/`` and ``agents/``), if any."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "demo").is_dir() and (root / "agents").is_dir() else None


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "willowisp" / "demo"


def build_all(root: Path | None, cache: Path) -> Iterator[Service]:
    """The four non-Python services, one by one as each is built (or found wanting), in
    the order the status lines show them."""
    builders = (
        ("go", "inventory", _go),
        ("nodejs", "pricing", _node),
        ("java", "ledger", _java),
        ("rust", "risk", _rust),
    )
    for runtime, name, builder in builders:
        if root is None:
            yield Service(runtime, name, note="no checkout here (the services' sources are demo/)")
            continue
        try:
            yield builder(root, cache)
        except _Skip as skip:
            yield Service(runtime, name, note=str(skip))


class _Skip(Exception):
    """Why a service cannot run here; its message is the status line's reason."""


def _tool(name: str, what: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise _Skip(f"{name} not found ({what} is not installed; the demo never installs one)")
    return path


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    """Run a build step; a failure is a skip whose reason is the tool's last error line."""
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise _Skip(f"{Path(argv[0]).name} took over {BUILD_TIMEOUT_S:.0f} s") from None
    except OSError as exc:
        raise _Skip(f"cannot run {argv[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        # the first line that says something: not a "# package" header of go's
        errors = [ln for ln in lines if "error" in ln.lower() and not ln.startswith("#")]
        errors += [ln for ln in lines if not ln.startswith("#")] or lines or ["no output"]
        raise _Skip(f"{Path(argv[0]).name} failed: {errors[0][:160]}")


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if text else "?"


def _go(root: Path, cache: Path) -> Service:
    go = _tool("go", "Go")
    target = cache / "go" / "inventory"
    target.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    _run([go, "build", "-o", str(target), "."], root / "demo" / "go", env)
    return Service("go", "inventory", (str(target),), f"built with {_version([go, 'version'])}")


def _node(root: Path, cache: Path) -> Service:
    node = _tool("node", "Node.js")
    register = node_register()
    if register is None:
        raise _Skip("the Node agent (agents/node) is not in this build")
    source = root / "demo" / "node"
    deps = cache / "node"
    manifest = deps / "package.json"
    if not (deps / "node_modules" / "async-mutex").is_dir() or _newer(
        source / "package.json", manifest
    ):
        npm = _tool("npm", "npm")
        deps.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / "package.json", manifest)
        _run([npm, "install", "--omit=dev", "--no-audit", "--no-fund"], deps)
    env = {"NODE_PATH": str(deps / "node_modules"), "WILLOWISP_NODE_API": str(register.parent)}
    note = f"node {_version([node, '--version'])}"
    return Service("nodejs", "pricing", (node, str(source / "pricing.js")), note, env)


def _java(root: Path, cache: Path) -> Service:
    javac = _tool("javac", "a JDK")
    java = _tool("java", "a JDK")
    jar = _java_agent(root)
    source = root / "demo" / "java" / "Ledger.java"
    classes = cache / "java"
    if _newer(source, classes / "Ledger.class") or _newer(jar, classes / "Ledger.class"):
        classes.mkdir(parents=True, exist_ok=True)
        _run([javac, "-g", "-cp", str(jar), "-d", str(classes), str(source)], source.parent)
    note = f"compiled with {_version([javac, '-version'])}"
    return Service("java", "ledger", (java, "-cp", str(classes), "Ledger"), note)


def _java_agent(root: Path) -> Path:
    """The Java agent's jar: the one found (``runtimes.java_agent_jar``), built first from
    the checkout's agents/java with Maven when it is missing or older than its sources (its
    build folder is the checkout's ignored ``target/``; Maven keeps dependencies in its own
    cache). The agent's own tests are skipped here: the test command runs them."""
    jar = java_agent_jar()
    project = root / "agents" / "java"
    sources = [p for p in (project / "src" / "main").rglob("*") if p.is_file()]
    sources.append(project / "pom.xml")
    built = project / "target" / JAVA_JAR
    stale = jar is None or (jar == built.resolve() and any(_newer(s, built) for s in sources))
    if not stale:
        assert jar is not None
        return jar
    if not (project / "pom.xml").is_file():
        raise _Skip("the Java agent's jar is not built and this checkout has no agents/java")
    mvn = _tool("mvn", "Maven (to build the Java agent)")
    try:  # offline first: quick when Maven's cache has everything
        _run([mvn, "-q", "-o", "package", "-DskipTests"], project)
    except _Skip:
        _run([mvn, "-q", "package", "-DskipTests"], project)
    jar = java_agent_jar()
    if jar is None:
        raise _Skip("Maven ran but left no agents/java/target/" + JAVA_JAR)
    return jar


def _rust(root: Path, cache: Path) -> Service:
    cargo = _tool("cargo", "Rust")
    target = cache / "rust-target"
    env = {**os.environ, "CARGO_TARGET_DIR": str(target)}
    _run([cargo, "build", "--quiet"], root / "demo" / "rust", env)
    binary = target / "debug" / "risk"
    return Service("rust", "risk", (str(binary),), f"built with {_version([cargo, '--version'])}")


def _newer(a: Path, b: Path) -> bool:
    """Is ``a`` newer than ``b`` (or ``b`` missing)?"""
    try:
        return a.stat().st_mtime > b.stat().st_mtime
    except FileNotFoundError:
        return True
