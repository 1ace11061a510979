#!/usr/bin/env python3
"""Repository checks run by ``nox -s repo``.

* every package has ``py.typed``, ``__about__.py`` (holding only ``__version__``),
  ``README.md``, ``CHANGELOG.md`` and a ``tests/`` directory without ``__init__.py``;
* every sibling dependency is a range that admits the sibling's current version;
* sibling packages import peregrine_core only through its public surface (no ``_private``
  module, except ``peregrine_core.testing``/``plugins``/``poller``, which are public).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = sorted(p.name for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").exists())


def _version(dist: str) -> tuple[int, ...]:
    about = ROOT / "packages" / dist / "src" / dist.replace("-", "_") / "__about__.py"
    match = re.fullmatch(r'__version__ = "([0-9.]+)"\n', about.read_text())
    if match is None:
        raise SystemExit(f'{about}: must hold only __version__ = "X.Y.Z"')
    return tuple(int(x) for x in match.group(1).split("."))


def _admits(spec: str, version: tuple[int, ...]) -> bool:
    for clause in spec.split(","):
        m = re.fullmatch(r"\s*(>=|<=|<|>|==|~=|!=)\s*([0-9.]+)\s*", clause)
        if m is None:
            return False
        op, bound = m.group(1), tuple(int(x) for x in m.group(2).split("."))
        width = max(len(bound), len(version))
        v = version + (0,) * (width - len(version))
        b = bound + (0,) * (width - len(bound))
        ok = {
            ">=": v >= b,
            "<=": v <= b,
            "<": v < b,
            ">": v > b,
            "==": v == b,
            "!=": v != b,
            "~=": v >= b and v[: len(bound) - 1] == b[: len(bound) - 1],
        }[op]
        if not ok:
            return False
    return True


def main() -> int:
    problems: list[str] = []
    for dist in PACKAGES:
        pkg = ROOT / "packages" / dist
        src = pkg / "src" / dist.replace("-", "_")
        for needed in (src / "py.typed", src / "__about__.py", pkg / "README.md", pkg / "CHANGELOG.md"):
            if not needed.exists():
                problems.append(f"{dist}: missing {needed.relative_to(ROOT)}")
        if not (pkg / "tests").is_dir():
            problems.append(f"{dist}: no tests/ directory")
        elif (pkg / "tests" / "__init__.py").exists():
            problems.append(f"{dist}: tests/__init__.py must not exist")
        meta = tomllib.loads((pkg / "pyproject.toml").read_text())
        for req in meta["project"].get("dependencies", []):
            name = re.split(r"[<>=!~ \[;]", req, maxsplit=1)[0].strip()
            if name in PACKAGES:
                spec = req[len(name) :].strip()
                if "==" in spec or not spec:
                    problems.append(f"{dist}: dependency {req!r} must be a range, not a pin")
                elif not _admits(spec, _version(name)):
                    problems.append(f"{dist}: dependency {req!r} excludes {name} {_version(name)}")
        if dist == "peregrine-core":
            continue
        for path in src.rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("peregrine_"):
                    parts = node.module.split(".")
                    if any(part.startswith("_") for part in parts[1:]):
                        problems.append(f"{path.relative_to(ROOT)}: imports private module {node.module}")
    for p in problems:
        print(p)
    print(f"checked {len(PACKAGES)} packages: {'ok' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
