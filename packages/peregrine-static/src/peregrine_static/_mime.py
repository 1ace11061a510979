"""Content types by file name: our table, then the standard library's defaults, then bytes.

Strategy: the lower-cased last suffix of the name is looked up in :data:`MIME_TYPES`, a table
covering what the web serves; a miss falls back to :mod:`mimetypes`' built-in defaults (an
instance created with no files, so the answer never depends on the machine's
``/etc/mime.types`` or Windows registry); a miss there gives ``application/octet-stream``.
Textual types carry ``; charset=utf-8``.

Invariants: the result is a valid ``Content-Type`` value; the same name always gives the same
answer on every machine.
"""

from __future__ import annotations

import mimetypes
from functools import lru_cache
from typing import Final

__all__ = ["DEFAULT_CONTENT_TYPE", "MIME_TYPES", "content_type_for", "with_charset"]

DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"

#: Extension (lower case, without the dot) to media type, without parameters.
MIME_TYPES: Final[dict[str, str]] = {
    # documents and code
    "html": "text/html",
    "htm": "text/html",
    "xhtml": "application/xhtml+xml",
    "css": "text/css",
    # RFC 9239 §6: text/javascript is the one media type for JavaScript (modules too).
    "js": "text/javascript",
    "mjs": "text/javascript",
    "cjs": "text/javascript",
    "json": "application/json",
    "map": "application/json",
    "jsonld": "application/ld+json",
    "geojson": "application/geo+json",
    "webmanifest": "application/manifest+json",
    "xml": "application/xml",
    "xsl": "application/xml",
    "rss": "application/rss+xml",
    "atom": "application/atom+xml",
    "txt": "text/plain",
    "text": "text/plain",
    "md": "text/markdown",
    "markdown": "text/markdown",
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "ics": "text/calendar",
    "vtt": "text/vtt",
    "yaml": "application/yaml",
    "yml": "application/yaml",
    "toml": "application/toml",
    "wasm": "application/wasm",
    "pdf": "application/pdf",
    "epub": "application/epub+zip",
    # images
    "svg": "image/svg+xml",
    "png": "image/png",
    "apng": "image/apng",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "jpe": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "avif": "image/avif",
    "jxl": "image/jxl",
    "ico": "image/x-icon",
    "cur": "image/x-icon",
    "bmp": "image/bmp",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    # fonts (RFC 8081)
    "woff": "font/woff",
    "woff2": "font/woff2",
    "ttf": "font/ttf",
    "otf": "font/otf",
    "eot": "application/vnd.ms-fontobject",
    # audio and video
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "aac": "audio/aac",
    "ogg": "audio/ogg",
    "oga": "audio/ogg",
    "opus": "audio/ogg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "weba": "audio/webm",
    "mp4": "video/mp4",
    "m4v": "video/mp4",
    "webm": "video/webm",
    "ogv": "video/ogg",
    "mov": "video/quicktime",
    "mkv": "video/x-matroska",
    "m3u8": "application/vnd.apple.mpegurl",
    # archives
    "zip": "application/zip",
    "gz": "application/gzip",
    "tgz": "application/gzip",
    "bz2": "application/x-bzip2",
    "xz": "application/x-xz",
    "zst": "application/zstd",
    "tar": "application/x-tar",
    "7z": "application/x-7z-compressed",
    "jar": "application/java-archive",
}

#: Non-``text/*`` media types whose content is text, so ``charset=utf-8`` applies.
_TEXTUAL: Final = frozenset(
    {
        "application/javascript",
        "application/json",
        "application/xml",
        "application/yaml",
        "application/toml",
        "application/x-sh",
        "application/x-python-code",
    }
)

_STDLIB: Final = mimetypes.MimeTypes(filenames=(), strict=True)


def with_charset(media_type: str) -> str:
    """Append ``; charset=utf-8`` to a textual media type that has no parameters.

    Textual means ``text/*``, a ``+json`` or ``+xml`` structured syntax suffix (RFC 6839), or
    one of a few ``application/*`` text formats (JSON, XML, YAML, TOML).
    """
    if ";" in media_type:
        return media_type
    if media_type.startswith("text/") or media_type.endswith(("+json", "+xml")) or media_type in _TEXTUAL:
        return media_type + "; charset=utf-8"
    return media_type


@lru_cache(maxsize=512)
def _for_suffix(suffix: str) -> str:
    media_type = MIME_TYPES.get(suffix)
    if media_type is None:
        media_type = _STDLIB.types_map[1].get("." + suffix, DEFAULT_CONTENT_TYPE)
    return with_charset(media_type)


def content_type_for(name: str) -> str:
    """Return the ``Content-Type`` for a file name (or path), e.g. ``text/css; charset=utf-8``.

    Only the last suffix counts (``a.tar.gz`` is ``application/gzip``); case is ignored; a name
    without a suffix, or whose suffix nobody knows, is ``application/octet-stream``.
    """
    slash = name.rfind("/")
    dot = name.rfind(".")
    if dot <= slash + 1:  # no suffix, or a dot file such as ".htaccess"
        return DEFAULT_CONTENT_TYPE
    return _for_suffix(name[dot + 1 :].lower())
