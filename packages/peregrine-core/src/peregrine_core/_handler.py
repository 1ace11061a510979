"""The ``Handler`` protocol and the check the server runs on the object it is given."""

from __future__ import annotations

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
    if not _accepts_two_arguments(method):
        raise TypeError(f"handler {name}.handle_request must accept two arguments (req, resp)")
    close = getattr(handler, "close", None)
    if close is not None and not callable(close):
        raise TypeError(f"handler {name}.close exists but is not callable")
    return handler


def _accepts_two_arguments(method: Any) -> bool:
    """Whether ``method(req, resp)`` binds, read from its code object (no ``inspect``)."""
    func = getattr(method, "__func__", method)
    code = getattr(func, "__code__", None)
    if code is None:
        return True  # a builtin or a callable object: trust it
    positional = code.co_argcount - (1 if hasattr(method, "__self__") else 0)
    required = positional - len(getattr(func, "__defaults__", None) or ())
    takes_varargs = bool(code.co_flags & 0x04)  # CO_VARARGS
    required_kwonly = set(code.co_varnames[code.co_argcount : code.co_argcount + code.co_kwonlyargcount])
    required_kwonly -= set(getattr(func, "__kwdefaults__", None) or {})
    return required <= 2 and (positional >= 2 or takes_varargs) and not required_kwonly
