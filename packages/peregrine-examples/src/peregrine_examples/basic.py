"""The basic example: every request gets ``Kawww``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from peregrine_core import Request, Response

from ._run import run

__all__ = ["Basic", "main"]


class Basic:
    """Answers every request with ``Kawww\\n``."""

    def handle_request(self, req: Request, resp: Response) -> None:
        resp.add_header("Content-Type", "text/plain")
        resp.set_body(b"Kawww\n")


def main(argv: Sequence[str] | None = None) -> int:
    return run(Basic(), "Peregrine basic example", argv)


if __name__ == "__main__":
    sys.exit(main())
