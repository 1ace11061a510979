"""The MIME table: our entries, the standard library's defaults, the fallback, charsets."""

from __future__ import annotations

import mimetypes

import pytest

from peregrine_static import MIME_TYPES, content_type_for
from peregrine_static._mime import with_charset

TABLE = [
    ("index.html", "text/html; charset=utf-8"),
    ("page.htm", "text/html; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("app.js", "text/javascript; charset=utf-8"),
    ("module.mjs", "text/javascript; charset=utf-8"),
    ("data.json", "application/json; charset=utf-8"),
    ("app.js.map", "application/json; charset=utf-8"),
    ("image.svg", "image/svg+xml; charset=utf-8"),
    ("image.png", "image/png"),
    ("photo.jpg", "image/jpeg"),
    ("photo.jpeg", "image/jpeg"),
    ("anim.gif", "image/gif"),
    ("pic.webp", "image/webp"),
    ("pic.avif", "image/avif"),
    ("favicon.ico", "image/x-icon"),
    ("old.bmp", "image/bmp"),
    ("font.woff", "font/woff"),
    ("font.woff2", "font/woff2"),
    ("font.ttf", "font/ttf"),
    ("font.otf", "font/otf"),
    ("module.wasm", "application/wasm"),
    ("notes.txt", "text/plain; charset=utf-8"),
    ("README.md", "text/markdown; charset=utf-8"),
    ("table.csv", "text/csv; charset=utf-8"),
    ("feed.xml", "application/xml; charset=utf-8"),
    ("doc.pdf", "application/pdf"),
    ("archive.zip", "application/zip"),
    ("archive.tar.gz", "application/gzip"),
    ("song.mp3", "audio/mpeg"),
    ("movie.mp4", "video/mp4"),
    ("clip.webm", "video/webm"),
    ("sound.ogg", "audio/ogg"),
    ("sound.wav", "audio/wav"),
    ("site.webmanifest", "application/manifest+json; charset=utf-8"),
    ("feed.rss", "application/rss+xml; charset=utf-8"),
    # case does not matter
    ("INDEX.HTML", "text/html; charset=utf-8"),
    ("Photo.JPG", "image/jpeg"),
    # only the last suffix counts; directories in the path are ignored
    ("a.min.js", "text/javascript; charset=utf-8"),
    ("dir.css/file", "application/octet-stream"),
    ("/srv/www/x.png", "image/png"),
    # no suffix, dot files, unknown suffix
    ("Makefile", "application/octet-stream"),
    (".htaccess", "application/octet-stream"),
    ("dir/.env", "application/octet-stream"),
    ("trailing.", "application/octet-stream"),
    ("file.unknownext", "application/octet-stream"),
    ("", "application/octet-stream"),
]


@pytest.mark.parametrize(("name", "expected"), TABLE)
def test_content_type_table(name: str, expected: str) -> None:
    assert content_type_for(name) == expected


def test_stdlib_defaults_fill_the_gaps() -> None:
    assert "py" not in MIME_TYPES
    assert content_type_for("script.py") == "text/x-python; charset=utf-8"
    assert "doc" not in MIME_TYPES
    assert content_type_for("letter.doc") == "application/msword"


def test_system_mime_files_are_not_consulted() -> None:
    # A type registered at run time (as /etc/mime.types would be) does not leak in.
    mimetypes.add_type("application/x-peregrine-test", ".prgtest")
    try:
        assert content_type_for("a.prgtest") == "application/octet-stream"
    finally:
        mimetypes.types_map.pop(".prgtest", None)


@pytest.mark.parametrize(
    ("media_type", "expected"),
    [
        ("text/plain", "text/plain; charset=utf-8"),
        ("text/html; charset=iso-8859-1", "text/html; charset=iso-8859-1"),
        ("application/ld+json", "application/ld+json; charset=utf-8"),
        ("application/atom+xml", "application/atom+xml; charset=utf-8"),
        ("application/javascript", "application/javascript; charset=utf-8"),
        ("image/png", "image/png"),
        ("application/octet-stream", "application/octet-stream"),
    ],
)
def test_charset_is_added_to_text_types_only(media_type: str, expected: str) -> None:
    assert with_charset(media_type) == expected


def test_every_table_entry_is_a_lowercase_suffix_and_a_media_type() -> None:
    for suffix, media_type in MIME_TYPES.items():
        assert suffix == suffix.lower() and "." not in suffix
        kind, _, subtype = media_type.partition("/")
        assert kind and subtype and ";" not in media_type
