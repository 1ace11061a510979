"""Development sessions: one per package, plus lint, repository checks and the benchmark harness.

``nox`` runs every session CI needs. A package session installs only that package, the
sibling packages it declares (from this checkout) and its ``test`` extra, so an undeclared
dependency fails; then it runs ``mypy --strict`` on the package's ``src`` and ``tests`` and
its test suite. Typical calls: ``nox``, ``nox -s ws``, ``nox -t tests``, ``nox -s core -- -k chunked``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PACKAGES = {
    "core": "peregrine-core",
    "ws": "peregrine-ws",
    "static": "peregrine-static",
    "wsgi": "peregrine-wsgi",
    "examples": "peregrine-examples",
}
nox.options.sessions = [*PACKAGES, "lint", "repo", "harness"]
nox.options.reuse_existing_virtualenvs = True


def _siblings(dist: str) -> list[str]:
    """The sibling distributions ``dist`` depends on, dependencies first."""
    meta = tomllib.loads((ROOT / "packages" / dist / "pyproject.toml").read_text())
    order: list[str] = []
    for req in meta["project"].get("dependencies", []):
        name = re.split(r"[<>=!~ \[;]", req, maxsplit=1)[0].strip()
        if name in PACKAGES.values():
            for dep in [*_siblings(name), name]:
                if dep not in order:
                    order.append(dep)
    return order


def _package_session(short: str, dist: str) -> None:
    @nox.session(name=short, tags=["tests", short])
    def run(session: nox.Session) -> None:
        pkg = ROOT / "packages" / dist
        installs: list[str] = []
        for sibling in _siblings(dist):
            installs += ["-e", str(ROOT / "packages" / sibling)]
        session.install(*installs, "-e", f"{pkg}[test]")
        session.chdir(pkg)
        session.run("mypy", "--strict", "src", "tests")
        session.run("python", "-m", "pytest", "-q", *session.posargs)

    run.__doc__ = f"Type-check and test {dist}."


for _short, _dist in PACKAGES.items():
    _package_session(_short, _dist)


@nox.session(tags=["lint"])
def lint(session: nox.Session) -> None:
    """ruff format --check and ruff check over the whole repository."""
    session.install("ruff>=0.6")
    session.run("ruff", "format", "--check", ".")
    session.run("ruff", "check", ".")


@nox.session(tags=["repo"])
def repo(session: nox.Session) -> None:
    """Repository checks: sibling ranges, py.typed, public imports."""
    session.run("python", str(ROOT / "tools" / "check_repo.py"), external=True)


@nox.session(default=False)
def build(session: nox.Session) -> None:
    """Build every wheel and sdist and check them with twine."""
    session.install("build", "twine")
    out = ROOT / "dist"
    for dist in PACKAGES.values():
        session.run("python", "-m", "build", "--outdir", str(out), str(ROOT / "packages" / dist))
    session.run("twine", "check", *[str(p) for p in out.iterdir()])


@nox.session(tags=["harness"])
def harness(session: nox.Session) -> None:
    """The benchmark harness: mypy, its unit tests and a ``--quick`` smoke run (no timing checked)."""
    session.install("pytest>=8", "mypy>=1.10")
    bench_dir = ROOT / "tools" / "bench"
    core_src = str(ROOT / "packages" / "peregrine-core" / "src")
    session.run(
        "mypy", "--strict", *sorted(str(p) for p in bench_dir.glob("*.py")), env={"MYPYPATH": core_src}
    )
    session.run("python", "-m", "pytest", "-q", "-p", "no:cacheprovider", str(bench_dir))
    session.run("python", str(bench_dir / "run.py"), "--quick")
    session.run("python", str(bench_dir / "hotpath.py"), "--quick")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Run the benchmark harness (``nox -s bench -- --quick`` for a smoke run)."""
    session.run("python", str(ROOT / "tools" / "bench" / "run.py"), *session.posargs, external=True)
