"""Settings of the minimal Django project the framework tests serve.

The SQLite database is the file named by ``FW_DJANGO_DB`` (a test's temporary directory),
prepared by ``fw_django_setup``. ``DEBUG`` is off, as in production: errors are plain pages,
and static files come from ``StaticFilesHandler`` (``fw_django_wsgi``), not from a view.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

_HERE: Final = Path(__file__).parent
_PREFIX: Final = f"{__name__.rpartition('.')[0]}." if "." in __name__ else ""

DEBUG = False
SECRET_KEY = "framework-tests-only-not-a-secret-0123456789abcdefghijklmnopqrstuvwxyz"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = f"{_PREFIX}fw_django_urls"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
DATABASES: dict[str, dict[str, Any]] = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["FW_DJANGO_DB"]}
}
TEMPLATES: list[dict[str, Any]] = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
# A fast hasher: the tests log in, and the default one spends about a second per password.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STATIC_URL = "/static/"
STATICFILES_DIRS = [("fw", str(_HERE / "django_static"))]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# Why a request was refused goes to the server's error output (DEBUG = False keeps it out of
# the 403 page), where the tests read it.
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.security.csrf": {"handlers": ["stderr"], "level": "WARNING", "propagate": False}},
}
