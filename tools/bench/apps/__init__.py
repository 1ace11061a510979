"""The applications the benchmark serves: one per server, all answering ``GET /`` alike.

Every app answers every request with the same 200 response: ``Content-Type: text/html`` and
the 6150-byte body of :mod:`._body`, keep-alive where the server offers it. The static
servers (nginx, h2o, peregrine_static) serve the same bytes from a file.
"""

from __future__ import annotations
