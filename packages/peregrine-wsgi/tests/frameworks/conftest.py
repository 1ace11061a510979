"""The servers the framework tests talk to: one Flask and one Django server per session.

Both are subprocesses (``fw_support.running``), so the upload test can read the server's
own RSS; they are stopped by their PID when the session ends.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from frameworks.fw_support import ServerProcess, child_env, module_name, running

#: Above the 200 MiB upload (the core's default is 1 MiB).
MAX_BODY_BYTES: Final = 256 * 1024 * 1024
SETUP_TIMEOUT: Final = 60.0


@pytest.fixture(scope="session")
def flask_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    app = f"{module_name('fw_flask_site')}:app"
    with running(app, "--max-body-bytes", str(MAX_BODY_BYTES), cwd=tmp_path_factory.mktemp("flask")) as srv:
        yield srv


@pytest.fixture(scope="session")
def django_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Settings and a migrated SQLite database (``fw_django_setup``) in a temporary directory."""
    root: Path = tmp_path_factory.mktemp("django")
    env = {
        "FW_DJANGO_DB": str(root / "db.sqlite3"),
        "DJANGO_SETTINGS_MODULE": module_name("fw_django_settings"),
    }
    done = subprocess.run(
        [sys.executable, "-m", module_name("fw_django_setup")],
        cwd=root,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=SETUP_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"database setup failed:\n{done.stdout}\n{done.stderr}"
    return env


@pytest.fixture(scope="session")
def django_server(
    django_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    app = f"{module_name('fw_django_wsgi')}:application"
    options = ("--max-body-bytes", str(MAX_BODY_BYTES))
    with running(app, *options, cwd=tmp_path_factory.mktemp("django-cwd"), env=django_env) as srv:
        yield srv
