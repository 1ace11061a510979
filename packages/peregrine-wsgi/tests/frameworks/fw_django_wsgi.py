"""The WSGI application of the Django project: Django's own, behind ``StaticFilesHandler``.

``StaticFilesHandler`` (django.contrib.staticfiles) answers ``STATIC_URL`` from the static
finders and hands every other request to Django; its file responses go through
``wsgi.file_wrapper`` when the server offers one.
"""

from __future__ import annotations

import os
from typing import Any

from django.contrib.staticfiles.handlers import StaticFilesHandler  # type: ignore[import-untyped]
from django.core.wsgi import get_wsgi_application  # type: ignore[import-untyped]

_PREFIX = f"{__name__.rpartition('.')[0]}." if "." in __name__ else ""
os.environ.setdefault("DJANGO_SETTINGS_MODULE", f"{_PREFIX}fw_django_settings")

application: Any = StaticFilesHandler(get_wsgi_application())
