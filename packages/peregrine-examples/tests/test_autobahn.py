"""The echo example passes the Autobahn|Testsuite fuzzing client (``tools/autobahn/run.py``).

The suite is Python 2.7 code; ``run.py`` finds a Python 2.7 (pyenv's, ``python2.7`` on
``PATH``...), builds its virtualenv once in ``tools/autobahn/.cache``, starts the echo
example with this interpreter, runs every case of groups 1 to 13 (about eight minutes) and
checks the report. This test runs it, then reads the report itself: every case must be OK,
NON-STRICT or INFORMATIONAL, and none may have closed uncleanly. Without a Python 2.7 the
test is skipped (``run.py`` exits with status 4).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
RUN = ROOT / "tools" / "autobahn" / "run.py"
EXIT_NO_PYTHON2 = 4
SUITE_TIMEOUT_S = 1200  # run.py's own bound on wstest (the full run takes about 9 minutes)
SETUP_SLACK_S = 600  # building the Python 2.7 virtualenv the first time
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
#: Autobahn's groups (it has no group 8 nor 11), and its number of cases in them (25.10.1).
GROUPS = {"1", "2", "3", "4", "5", "6", "7", "9", "10", "12", "13"}
CASES = 517


def test_echo_example_passes_every_autobahn_fuzzing_client_case_of_groups_1_to_13(tmp_path: Path) -> None:
    assert RUN.is_file(), f"{RUN} is missing"
    outdir = tmp_path / "autobahn"
    done = subprocess.run(
        [sys.executable, str(RUN), "--outdir", str(outdir), "--timeout", str(SUITE_TIMEOUT_S)],
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_S + SETUP_SLACK_S,
        check=False,
    )
    if done.returncode == EXIT_NO_PYTHON2:
        pytest.skip(f"Autobahn|Testsuite needs a Python 2.7: {done.stderr.strip()}")
    assert done.returncode == 0, f"run.py failed:\n{done.stdout[-5000:]}\n{done.stderr[-10000:]}"

    (cases,) = json.loads((outdir / "servers" / "index.json").read_text()).values()
    bad = {
        case_id: (entry["behavior"], entry["behaviorClose"])
        for case_id, entry in cases.items()
        if entry["behavior"] not in PASSING or entry["behaviorClose"] in ("FAILED", "UNCLEAN")
    }
    assert bad == {}
    assert {case_id.split(".")[0] for case_id in cases} == GROUPS
    assert len(cases) == CASES  # nothing excluded, nothing missing
