"""Fixtures: a served tree with every kind of entry the tests need, and a file outside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _support import DATA_100, LARGE, OLD_MTIME_S, write


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the root holding files that must never be served."""
    out = tmp_path / "outside"
    write(out / "secret.txt", "top secret\n")
    write(out / "secret.gz", b"\x1f\x8bsecret")
    write(out / "index.html", "<h1>outside</h1>")
    return out


@pytest.fixture
def root(tmp_path: Path, outside: Path) -> Path:
    """The served tree.

    ::

        index.html  hello.txt  data100.bin  large.bin  style.css  noext
        app.js  app.js.gz  app.js.br       (precompressed siblings)
        page.js  page.js.gz -> ../outside/secret.gz
        stale.js  stale.js.gz              (sibling older than the file)
        docs/index.html  docs/guide.md
        evil.com/index.html                (a directory named like a host)
        empty/                             (no index)
        .hidden.txt  .git/config
        link_in -> hello.txt   link_out -> ../outside/secret.txt
        docs_link -> docs      dir_out -> ../outside
    """
    r = tmp_path / "root"
    write(r / "index.html", "<h1>home</h1>\n")
    write(r / "hello.txt", "hello world\n")
    write(r / "data100.bin", DATA_100)
    write(r / "large.bin", LARGE)
    write(r / "style.css", "body{}\n")
    write(r / "noext", "no extension\n")
    write(r / "app.js", "console.log('identity');\n")
    write(r / "app.js.gz", b"\x1f\x8b gzip bytes", OLD_MTIME_S + 1)
    write(r / "app.js.br", b"brotli bytes", OLD_MTIME_S + 1)
    write(r / "page.js", "page\n")
    os.symlink(outside / "secret.gz", r / "page.js.gz")
    write(r / "stale.js", "fresh\n", OLD_MTIME_S + 10)
    write(r / "stale.js.gz", b"stale gzip", OLD_MTIME_S)
    write(r / "docs" / "index.html", "<h1>docs</h1>\n")
    write(r / "docs" / "guide.md", "# Guide\n")
    write(r / "evil.com" / "index.html", "<h1>not evil</h1>\n")
    (r / "empty").mkdir()
    write(r / ".hidden.txt", "hidden\n")
    write(r / ".git" / "config", "[core]\n")
    os.symlink("hello.txt", r / "link_in")
    os.symlink(outside / "secret.txt", r / "link_out")
    os.symlink("docs", r / "docs_link")
    os.symlink(outside, r / "dir_out")
    return r
