"""Where ``willowisp run`` points PYTHONPATH: a folder holding only our ``sitecustomize``
and a link to this package, so the observed interpreter (maybe another Python version)
imports the agent and nothing else of our environment."""

from __future__ import annotations

import hashlib
import os
import shutil

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SITECUSTOMIZE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sitecustomize.py")


def agent_path(cache_home: str | None = None) -> str:
    """Create (once) and return the folder to put first on the child's PYTHONPATH."""
    base = cache_home or os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    # stable across processes (str hash() is salted per process): one folder per install
    tag = hashlib.sha256(PACKAGE_DIR.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    folder = os.path.join(base, "willowisp", f"agent-{tag}")
    link = os.path.join(folder, "willowisp")
    target = os.path.join(folder, "sitecustomize.py")
    os.makedirs(folder, exist_ok=True)
    if not os.path.islink(link) or os.readlink(link) != PACKAGE_DIR:
        tmp = f"{link}.{os.getpid()}"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(PACKAGE_DIR, tmp)
        os.replace(tmp, link)
    with open(SITECUSTOMIZE, "rb") as src:
        wanted = src.read()
    try:
        with open(target, "rb") as cur:
            same = cur.read() == wanted
    except OSError:
        same = False
    if not same:
        tmp = f"{target}.{os.getpid()}"
        shutil.copyfile(SITECUSTOMIZE, tmp)
        os.replace(tmp, target)
    return folder
