"""The environment-variable carrier: context handed to a child process at launch.

Follows OTel's env-carrier spec: a field name is normalised to an environment variable
name (uppercase ASCII, every character outside ``[A-Za-z0-9_]`` becomes ``_``, a leading
digit gets a ``_`` prefix), so ``traceparent`` is ``TRACEPARENT`` and ``x-b3-traceid`` is
``X_B3_TRACEID``. Reads look only at the normalised name, as the spec requires. This is
what ``willowisp run -- cmd`` uses to join a child to its parent's trace.

Normalisation is lossy (``uberctx-a-b`` and ``uberctx-a_b`` collide), so prefix families
such as Jaeger's ``uberctx-*`` do not travel through the environment: ``names()`` reports
only what maps back unambiguously, which is no prefix family.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, MutableMapping

_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")


def env_name(field: str) -> str:
    """The environment variable that carries ``field`` (``tracestate`` -> ``TRACESTATE``)."""
    name = _NOT_NAME.sub("_", field.encode("ascii", "replace").decode("ascii")).upper()
    return "_" + name if name[:1].isdigit() else name


class EnvCarrier:
    """An environment mapping (``os.environ`` by default, or the dict passed to
    ``subprocess``'s ``env=``) seen as a carrier."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        # Read from and (when mutable) written to in place; os.environ when not given.
        self.environ: Mapping[str, str] = os.environ if environ is None else environ

    def get(self, name: str) -> list[str]:
        """The variable for ``name`` when set to a string."""
        v = self.environ.get(env_name(name))
        return [v] if isinstance(v, str) else []

    def names(self) -> Iterable[str]:
        """Always empty: variable names do not map back to field names."""
        return ()

    def set(self, name: str, value: str) -> None:
        """Set the variable for ``name``. Raises TypeError if the mapping is read-only."""
        if not isinstance(self.environ, MutableMapping):
            raise TypeError("EnvCarrier was given a read-only mapping; pass a dict to inject")
        self.environ[env_name(name)] = value
