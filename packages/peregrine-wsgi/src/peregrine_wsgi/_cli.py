"""The command line: ``peregrine wsgi APP`` and ``python -m peregrine_wsgi APP``.

``make_handler`` is registered in the ``peregrine_core.handlers`` entry-point group as
``wsgi``, so the core's ``peregrine`` command runs WSGI applications with every one of its
server options (``--workers``, ``--processes``, ``--handler-threads``...). ``python -m
peregrine_wsgi`` adds ``--factory`` and ``--root-path`` in front of that same command line
and hands the rest to it: the server options are defined once, by the core.

``APP`` is ``MODULE:ATTR`` (``ATTR`` may be dotted), ``MODULE:FACTORY()`` to call a factory
without arguments, or ``MODULE`` alone for ``MODULE:application`` (what Django's ``wsgi.py``
defines). As gunicorn does, the current directory goes in front of ``sys.path``. The mount
point (``SCRIPT_NAME``) comes from ``--root-path`` or, for ``peregrine wsgi``, from the
``SCRIPT_NAME`` environment variable (gunicorn reads it too).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import Any, Final

from peregrine_core import ConfigError

from ._handler import WSGIHandler

__all__ = ["load_app", "main", "make_handler"]

log = logging.getLogger("peregrine_wsgi")

DEFAULT_ATTRIBUTE: Final = "application"
ROOT_PATH_VARIABLE: Final = "SCRIPT_NAME"
_SPEC: Final = re.compile(r"([\w.]+)(?::([\w.]+)(\(\))?)?")


def _import_path() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def load_app(spec: str, *, factory: bool = False) -> Any:
    """Import the WSGI application that ``spec`` names (see the module's docstring).

    Args:
        spec: ``MODULE:ATTR``, ``MODULE:FACTORY()`` or ``MODULE``.
        factory: call the object found, without arguments, and use what it returns.

    Raises:
        ConfigError: a one-line reason: bad syntax, no such module or attribute, the module
            failed to import, the factory failed, or the result is not callable.
    """
    match = _SPEC.fullmatch(spec.strip())
    if match is None:
        raise ConfigError(f"application {spec!r} is not MODULE:ATTR, MODULE:FACTORY() or MODULE")
    module_name, attr, call = match.group(1), match.group(2) or DEFAULT_ATTRIBUTE, bool(match.group(3))
    _import_path()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(
                f"no module named {module_name!r} (looked in {os.getcwd()} and sys.path)"
            ) from None
        log.debug("importing %s failed", module_name, exc_info=True)
        raise ConfigError(f"importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:
        log.debug("importing %s failed", module_name, exc_info=True)
        raise ConfigError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc} (--log-level debug shows "
            "the traceback)"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
    if call or factory:
        if not callable(obj):
            raise ConfigError(f"{module_name}:{attr} is not callable, so it cannot be a factory")
        try:
            obj = obj()
        except Exception as exc:
            log.debug("calling %s:%s() failed", module_name, attr, exc_info=True)
            raise ConfigError(f"{module_name}:{attr}() failed: {type(exc).__name__}: {exc}") from exc
    if not callable(obj):
        raise ConfigError(
            f"{spec} is a {type(obj).__name__}, not a WSGI application (a callable taking "
            "environ and start_response)"
        )
    return obj


def make_handler(argument: str | None) -> WSGIHandler:
    """Entry point of the ``wsgi`` handler plugin: ``peregrine wsgi MODULE:APP``.

    Args:
        argument: the application (``MODULE:ATTR``, ``MODULE:FACTORY()``, ``MODULE``).

    Raises:
        ConfigError: no argument, or the application cannot be loaded (one-line reason).
    """
    if not argument:
        raise ConfigError("the wsgi handler needs the application: peregrine wsgi MODULE:APP")
    try:
        return WSGIHandler(load_app(argument), root_path=os.environ.get(ROOT_PATH_VARIABLE, ""))
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{ROOT_PATH_VARIABLE}: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    """The options ``python -m peregrine_wsgi`` reads itself; the rest go to ``peregrine``."""
    parser = argparse.ArgumentParser(
        prog="python -m peregrine_wsgi",
        description="Serve a WSGI (PEP 3333) application with Peregrine.",
        epilog=(
            "Every other option is the peregrine command's (see peregrine --help): --host, --port, "
            "--workers, --processes, --handler-threads, --handler-queue, --max-body-bytes, "
            "--body-buffer-bytes, --keepalive-timeout, --access-log, --log-level..."
        ),
    )
    parser.add_argument("app", metavar="APP", help="MODULE:ATTR, MODULE:FACTORY() or MODULE (:application)")
    parser.add_argument("--factory", action="store_true", help="APP is a factory: call it to get the app")
    parser.add_argument(
        "--root-path",
        default=None,
        metavar="PATH",
        help=f"the SCRIPT_NAME the app is mounted at, e.g. /api (default: ${ROOT_PATH_VARIABLE} or none)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m peregrine_wsgi``; return the exit status."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    spec = args.app
    if args.factory and not spec.endswith("()"):
        if ":" not in spec:
            spec += ":" + DEFAULT_ATTRIBUTE
        spec += "()"
    if args.root_path is not None:
        try:
            WSGIHandler(lambda e, s: [], root_path=args.root_path)
        except ValueError as exc:
            parser.error(f"--root-path: {exc}")
        os.environ[ROOT_PATH_VARIABLE] = args.root_path
    from peregrine_core.cli import main as core_main

    return core_main(["wsgi", spec, *rest])
