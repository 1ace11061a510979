"""Plugins found by entry point: protocol upgrades and ready-made handlers.

peregrine-core owns two entry-point groups:

* ``peregrine_core.upgrades``: a name such as ``websocket`` (the value of the ``Upgrade``
  header the plugin serves) mapped to a factory ``factory(handler, config) -> UpgradeHandler``.
* ``peregrine_core.handlers``: a name such as ``static`` mapped to a factory of handlers,
  ``factory(argument: str | None) -> handler``, used by the ``peregrine`` command line.

Installed metadata is scanned once per process and cached; a plugin is imported only when
its name is asked for. A name that is missing or fails to import raises
:class:`~peregrine_core.PluginError` naming the group, the entry point and the distribution,
with the original exception chained. Two distributions claiming one name is an error that
names both.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from ._errors import PluginError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from ._config import ServerConfig
    from ._request import Request
    from .transport import Transport

__all__ = [
    "HANDLERS_GROUP",
    "UPGRADES_GROUP",
    "UpgradeHandler",
    "available",
    "load",
]

UPGRADES_GROUP: Final = "peregrine_core.upgrades"
HANDLERS_GROUP: Final = "peregrine_core.handlers"


@runtime_checkable
class UpgradeHandler(Protocol):
    """What a ``peregrine_core.upgrades`` plugin's factory returns (one per server).

    ``adopt`` is called on the HTTP worker thread once the ``101`` response has been sent in
    full; from then on the :class:`~peregrine_core.transport.Transport` (non-blocking)
    belongs to the plugin, which closes it (closing it gives the connection's slot back to
    the server's descriptor budget: until then it counts against ``max_connections``). ``data`` holds the
    bytes that arrived after the upgrade request, which belong to the new protocol;
    ``state`` is what the handshake passed to ``Response.upgrade(protocol, state)``.
    ``shutdown`` is called once while the server stops, after the HTTP workers have been
    joined and before the handler's ``close()``; it must close every adopted socket within
    ``timeout`` seconds.
    """

    def adopt(self, transport: Transport, request: Request, data: bytes, state: object) -> None: ...

    def shutdown(self, timeout: float) -> None: ...


class UpgradeFactory(Protocol):
    def __call__(self, handler: Any, config: ServerConfig) -> UpgradeHandler: ...


@dataclass(frozen=True)
class _Found:
    entry_point: EntryPoint
    distribution: str


_lock = threading.Lock()
_scanned: dict[str, dict[str, _Found]] = {}
_loaded: dict[tuple[str, str], object] = {}


def entry_points(group: str) -> Any:
    """``importlib.metadata.entry_points``, imported on first use (it costs megabytes)."""
    from importlib.metadata import entry_points as scan

    return scan(group=group)


def _scan(group: str) -> dict[str, _Found]:
    with _lock:
        found = _scanned.get(group)
        if found is not None:
            return found
        found = {}
        for ep in entry_points(group=group):
            dist = ep.dist.name if ep.dist is not None else "<unknown distribution>"
            other = found.get(ep.name)
            if other is not None and other.distribution != dist:
                raise PluginError(
                    f"entry point {ep.name!r} in group {group!r} is claimed by both "
                    f"{other.distribution} and {dist}; uninstall one of them"
                )
            found[ep.name] = _Found(ep, dist)
        _scanned[group] = found
        return found


def available(group: str) -> list[str]:
    """Names registered in ``group`` by installed distributions (nothing is imported)."""
    return sorted(_scan(group))


def load(group: str, name: str) -> object:
    """Import and return the object registered as ``name`` in ``group`` (cached).

    Raises:
        PluginError: nothing is registered under that name, or importing it failed.
    """
    key = (group, name)
    if key in _loaded:
        return _loaded[key]
    found = _scan(group).get(name)
    if found is None:
        names = ", ".join(available(group)) or "none"
        hint = {
            UPGRADES_GROUP: {"websocket": " (pip install peregrine-ws)"},
            HANDLERS_GROUP: {"static": " (pip install peregrine-static)"},
        }.get(group, {}).get(name, "")
        raise PluginError(f"no plugin {name!r} in entry-point group {group!r}{hint}; installed: {names}")
    try:
        obj = found.entry_point.load()
    except ImportError as exc:
        raise PluginError(
            f"plugin {name!r} ({found.entry_point.value}) from {found.distribution} in group "
            f"{group!r} failed to import: {exc}"
        ) from exc
    except Exception as exc:
        raise PluginError(
            f"plugin {name!r} ({found.entry_point.value}) from {found.distribution} in group "
            f"{group!r} is broken: {type(exc).__name__}: {exc}"
        ) from exc
    if not callable(obj):
        raise PluginError(
            f"plugin {name!r} from {found.distribution} in group {group!r} is not callable: {obj!r}"
        )
    _loaded[key] = obj
    return obj


def _reset_cache() -> None:
    """Forget scanned metadata (for tests that install entry points at run time)."""
    with _lock:
        _scanned.clear()
        _loaded.clear()
