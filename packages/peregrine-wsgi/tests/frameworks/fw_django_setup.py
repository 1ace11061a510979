"""Prepare the Django project's database: ``python -m fw_django_setup`` (``FW_DJANGO_DB`` set).

Runs the contrib apps' migrations, creates the ``fw_note`` table with raw SQL and two notes,
and a superuser for the admin login.
"""

from __future__ import annotations

import os

import django  # type: ignore[import-untyped]
from django.core.management import call_command  # type: ignore[import-untyped]

SUPERUSER = ("admin", "pw-for-tests")
NOTES = ("first note", "zweite Notiz \u00fc")


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fw_django_settings")  # the tests name it
    django.setup()
    from django.contrib.auth.models import User  # type: ignore[import-untyped]
    from django.db import connection  # type: ignore[import-untyped]

    call_command("migrate", interactive=False, verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE fw_note (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)")
        cursor.executemany("INSERT INTO fw_note (body) VALUES (%s)", [(n,) for n in NOTES])
    User.objects.create_superuser(SUPERUSER[0], "admin@example.invalid", SUPERUSER[1])


if __name__ == "__main__":
    main()
