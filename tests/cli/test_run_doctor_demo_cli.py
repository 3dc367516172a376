"""`willowisp run`, `doctor` and `demo` as a user calls them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def wisp(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "willowisp", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        check=False,
    )


def test_run_passes_exit_status_through(tmp_path):
    """The exit status of `willowisp run` is the command's."""
    r = wisp(
        "run", "--out", str(tmp_path / "run"), "--", sys.executable, "-c", "import sys; sys.exit(7)"
    )
    assert r.returncode == 7
    assert list((tmp_path / "run").glob("*.wtrace"))


def test_run_default_folder_and_names(tmp_path):
    """Without --out the run goes to ./wisp-traces/<UTC timestamp>/, one segment per process
    named <service>-<pid>-<process id prefix>-<n>.wtrace."""
    script = tmp_path / "hello.py"
    script.write_text("import threading\nwith threading.Lock():\n    pass\n")
    r = wisp("run", "--", sys.executable, str(script), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    [run] = list((tmp_path / "wisp-traces").iterdir())
    [seg] = list(run.glob("*.wtrace"))
    service, pid, prefix, n = seg.stem.split("-")
    assert (service, n) == ("hello", "1") and pid.isdigit() and len(prefix) == 8
    assert "recording into" in r.stderr and "willowisp analyze" in r.stderr


def test_run_bad_usage_is_one_line(tmp_path):
    """Nothing to run, a missing program or a bad ratio: one line on stderr, exit 2, and
    no (empty) run folder left behind."""
    for args in (
        ["run"],
        ["run", "--", str(tmp_path / "nope")],
        ["run", "--trace-ratio", "2", "--", "true"],
        ["run", "--boundary", "entry=nope", "--", "true"],
        ["run", "--redact", "everything", "--", "true"],
    ):
        r = wisp(*args, cwd=tmp_path)
        assert r.returncode == 2, args
        assert "Traceback" not in r.stderr
        assert len([ln for ln in r.stderr.splitlines() if ln.startswith("willowisp")]) >= 1
        assert not (tmp_path / "wisp-traces").exists(), args


def test_run_takes_defaults_from_willowisp_toml(tmp_path):
    """willowisp.toml in the working directory sets the mode, the out folder, boundaries and
    redaction; what the program's environment gets shows it (and the command line wins)."""
    (tmp_path / "willowisp.toml").write_text(
        'boundaries = ["entry=http:POST /checkout;runtimes=python"]\n'
        '[run]\nmode = "hops"\nout = "traces"\n'
        '[redact]\nheaders = ["x-request-id"]\nbodies = true\n'
    )
    show = (
        "import os; print(os.environ['WILLOWISP_MODE'], os.environ['WILLOWISP_BOUNDARIES'], "
        "os.environ['WILLOWISP_REDACT'], os.environ['WILLOWISP_OUT'], sep='|')"
    )
    r = wisp("run", "--", sys.executable, "-c", show, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    mode, bounds, red, out = r.stdout.strip().split("|")
    assert (mode, bounds) == ("hops", "entry=http:POST /checkout;runtimes=python")
    assert red == "header:x-request-id,bodies"
    assert Path(out).parent == tmp_path / "traces"
    r = wisp("run", "--mode", "full", "--", sys.executable, "-c", show, cwd=tmp_path)
    assert r.stdout.split("|")[0] == "full"
    (tmp_path / "willowisp.toml").write_text("[run]\nmode = 3\n")
    r = wisp("run", "--", "true", cwd=tmp_path)
    assert r.returncode == 2 and "willowisp.toml" in r.stderr and "Traceback" not in r.stderr


SHOW_SETTINGS = (
    "import os; print(os.environ['WILLOWISP_MODE'], os.environ['WILLOWISP_TRACE_RATIO'], "
    "os.environ['WILLOWISP_OUT'], sep='|')"
)


def test_run_takes_settings_from_willowisp_variables(tmp_path):
    """WILLOWISP_OUT, WILLOWISP_MODE and WILLOWISP_TRACE_RATIO set for `willowisp run` are
    what the program's agents get (the contract's variables), and the run goes where
    WILLOWISP_OUT says; an option on the command line wins over its variable."""
    out = tmp_path / "from-env"
    env = {"WILLOWISP_OUT": str(out), "WILLOWISP_MODE": "hops", "WILLOWISP_TRACE_RATIO": "0.25"}
    r = wisp("run", "--", sys.executable, "-c", SHOW_SETTINGS, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().split("|") == ["hops", "0.25", str(out)]
    assert list(out.glob("*.wtrace")) and not (tmp_path / "wisp-traces").exists()
    r = wisp(
        "run", "--mode", "full", "--trace-ratio", "1", "--out", str(tmp_path / "opt"),
        "--", sys.executable, "-c", SHOW_SETTINGS, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert r.stdout.strip().split("|") == ["full", "1.0", str(tmp_path / "opt")]


def test_run_refuses_bad_willowisp_variables(tmp_path):
    """A WILLOWISP_MODE or WILLOWISP_TRACE_RATIO that means nothing: one line naming the
    variable, exit 2, nothing run and no folder left."""
    for env in ({"WILLOWISP_MODE": "bogus"}, {"WILLOWISP_TRACE_RATIO": "lots"}):
        r = wisp("run", "--", sys.executable, "-c", "print('ran')", cwd=tmp_path, env=env)
        assert r.returncode == 2, env
        [line] = r.stderr.splitlines()
        assert next(iter(env)) in line and "Traceback" not in r.stderr
        assert "ran" not in r.stdout and not (tmp_path / "wisp-traces").exists()


def test_run_with_agents_disabled_says_so_and_leaves_no_folder(tmp_path):
    """WILLOWISP_DISABLED=1: the command runs as it is, run says nothing is recorded and
    leaves no empty run folder (nor a 'next: willowisp analyze' pointing at nothing)."""
    r = wisp(
        "run", "--", sys.executable, "-c", "import sys; print('ran'); sys.exit(3)",
        cwd=tmp_path, env={"WILLOWISP_DISABLED": "1"},
    )  # fmt: skip
    assert r.returncode == 3 and r.stdout.strip() == "ran"
    assert "WILLOWISP_DISABLED" in r.stderr and "willowisp analyze" not in r.stderr
    assert not (tmp_path / "wisp-traces").exists()


def test_doctor_reports_this_machine():
    """doctor names the runtimes, the Python agent and what simulated hosts can do here."""
    r = wisp("doctor")
    assert r.returncode == 0, r.stderr
    for word in (
        "python",
        "go",
        "java",
        "rust",
        "node",
        "agents:",
        "UTS namespaces",
        "fake time",
        "loopback",
    ):
        assert word in r.stdout
    # every importer, and what the toolchain-backed ones use here (go and a JDK are installed)
    formats = next(line for line in r.stdout.splitlines() if line.strip().startswith("formats"))
    for name in ("otlp-json", "otlp-proto", "jaeger", "zipkin", "chrome", "go", "jfr"):
        assert name in formats
    assert "wisp-goimport" in r.stdout and "OTLP/gRPC yes" in r.stdout


def test_help_texts():
    """Every command explains itself."""
    for cmd in ("run", "analyze", "demo", "doctor"):
        r = wisp(cmd, "--help")
        assert r.returncode == 0 and "usage: willowisp " + cmd in r.stdout


def test_agent_folder_is_one_per_install(tmp_path):
    """Every `willowisp run` of one installation uses the same agent folder."""
    code = "from willowisp.agent.bootstrap import agent_path; print(agent_path())"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    paths = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        ).stdout
        for _ in range(3)
    }
    assert len(paths) == 1
    assert len(list((tmp_path / "willowisp").iterdir())) == 1


NODE_HOP = """
const http = require('http');
const srv = http.createServer((req, res) => res.end('ok'));
srv.listen(0, '127.0.0.1', () => {
  http.get(`http://127.0.0.1:${srv.address().port}/price`, (r) => {
    r.resume();
    r.on('end', () => srv.close());
  });
});
"""


def test_run_records_a_node_program_through_node_options(tmp_path):
    """`willowisp run -- node app.js` loads the Node agent (NODE_OPTIONS --require, the copy
    shipped in the package) into the program: its request to itself is one linked hop."""
    app = tmp_path / "app.js"
    app.write_text(NODE_HOP)
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "NODE_OPTIONS"}
    r = subprocess.run(
        [sys.executable, "-m", "willowisp", "run", "--out", str(out), "--", "node", str(app)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(wisp("analyze", str(out), "--format", "json").stdout)
    assert doc["trace"]["runtimes"] == ["nodejs"]
    (hop,) = doc["hops"]
    assert (hop["count"], hop["linked"]) == (1, 1)
    assert "nodejs" in wisp("doctor").stdout.split("agents:")[1].split("importers")[0]
