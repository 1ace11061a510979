"""The ``Handler`` protocol and the check the server runs on the object it is given."""

from __future__ import annotations

import inspect
from typing import Any, Protocol, runtime_checkable

from ._request import Request
from ._response import Response

__all__ = ["WS_HOOKS", "Handler", "check_handler"]

#: Handler methods that only make sense with the ``websocket`` upgrade plugin installed.
WS_HOOKS = ("handle_ws_conn", "handle_ws_frame", "handle_ws_message", "handle_ws_disconn")


@runtime_checkable
class Handler(Protocol):
    """What a Peregrine handler implements.

    ``handle_request`` runs on a worker thread for every request; one handler instance is
    shared by every worker, so it must be thread-safe. It fills in ``resp``; an exception
    it raises becomes a 500 response (logged with its traceback) and the server carries on.
    An optional ``close()`` is called once when the server shuts down.
    """

    def handle_request(self, req: Request, resp: Response) -> None: ...


def check_handler(handler: Any) -> Any:
    """Instantiate ``handler`` if it is a class, then check it implements :class:`Handler`.

    Raises:
        TypeError: naming exactly what is missing or wrong.
    """
    if isinstance(handler, type):
        cls = handler
        if not callable(getattr(cls, "handle_request", None)):
            raise TypeError(f"handler class {cls.__qualname__} has no handle_request(self, req, resp) method")
        try:
            handler = cls()
        except TypeError as exc:
            raise TypeError(
                f"handler class {cls.__qualname__} cannot be instantiated without arguments: {exc}; "
                "pass an instance instead"
            ) from exc
    method = getattr(handler, "handle_request", None)
    name = type(handler).__qualname__
    if method is None:
        raise TypeError(f"handler {name} has no handle_request(req, resp) method")
    if not callable(method):
        raise TypeError(f"handler {name}.handle_request is not callable")
    try:
        inspect.signature(method).bind(None, None)
    except TypeError:
        raise TypeError(
            f"handler {name}.handle_request must accept two arguments (req, resp); "
            f"its signature is {inspect.signature(method)}"
        ) from None
    except ValueError:
        pass  # no signature available (builtins): trust it
    close = getattr(handler, "close", None)
    if close is not None and not callable(close):
        raise TypeError(f"handler {name}.close exists but is not callable")
    return handler
