#!/usr/bin/env python3
"""Set up and run Peregrine from a fresh checkout, with nothing but Python 3.11+.

    python3 tools/dev.py counter [--port 3000]   # the counter example on 0.0.0.0:3000
    python3 tools/dev.py test [NOX ARGS...]      # every package's tests, mypy and lint

``counter`` (and ``run MODULE [ARGS]``) creates ``.venv`` with every package installed
in editable mode; ``test`` creates ``.venv-nox`` with nox and runs it (nox makes one
virtualenv per session under ``.nox``). Both reuse what an earlier run set up.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["peregrine-core", "peregrine-ws", "peregrine-static", "peregrine-wsgi", "peregrine-examples"]
NOX_REQUIREMENT = "nox>=2024.4.15"


def _python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _ensure_env(env: Path, requirements: list[str]) -> Path:
    """Create ``env`` if needed and install ``requirements`` unless they are unchanged."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script must say so on older Pythons
        sys.exit(f"Peregrine needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    python = _python(env)
    if not python.exists():
        print(f"creating {env.relative_to(ROOT)}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(env)
    digest = hashlib.sha256("\n".join(requirements).encode())
    for req in requirements:
        pyproject = Path(req.removeprefix("-e ")) / "pyproject.toml"
        if pyproject.exists():
            digest.update(pyproject.read_bytes())
    stamp = env / ".peregrine-installed"
    if not stamp.exists() or stamp.read_text() != digest.hexdigest():
        args: list[str] = []
        for req in requirements:
            args += req.split(" ", 1) if req.startswith("-e ") else [req]
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *args], check=True)
        stamp.write_text(digest.hexdigest())
    return python


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in ("counter", "run"):
        python = _ensure_env(ROOT / ".venv", [f"-e {ROOT / 'packages' / p}" for p in PACKAGES])
        module = "peregrine_examples.counter" if command == "counter" else rest.pop(0)
        os.execv(str(python), [str(python), "-m", module, *rest])
    if command == "test":
        python = _ensure_env(ROOT / ".venv-nox", [NOX_REQUIREMENT])
        os.chdir(ROOT)
        os.execv(str(python), [str(python), "-m", "nox", *rest])
    print(f"unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
