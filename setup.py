"""Build the optional C helpers (willowisp._native); everything else is in pyproject.toml.

The extension is optional: without a compiler (or on an interpreter it was not built for)
the agent uses its pure-Python path, which records the same events.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "willowisp._native",
            ["src/willowisp/_native.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
