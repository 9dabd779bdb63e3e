"""optuna-dashboard is a client of every study moesearch makes: a real study, the dashboard's own server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import free_port

from moesearch.core import results


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.fixture
def dashboard(tiny_study):
    """optuna-dashboard serving the tiny study's SQLite storage; its base URL."""
    port = free_port()
    command = [
        shutil.which("optuna-dashboard") or sys.exit("optuna-dashboard is a test dependency"),
        f"sqlite:///{tiny_study / 'moesearch.db'}",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            get(f"{base}/api/studies")
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
            time.sleep(0.3)
    yield base
    server.terminate()
    server.wait(timeout=30)


@pytest.mark.slow
def test_the_dashboard_finds_every_trial_with_its_assignment_and_objectives(dashboard, tiny_study):
    summaries = get(f"{dashboard}/api/studies")["study_summaries"]
    tiny = next(s for s in summaries if s["study_name"] == "tiny")
    study = get(f"{dashboard}/api/studies/{tiny['study_id']}")
    assert study["objective_names"] == ["val_loss", "tokens_per_s"], "axes named, not 'Objective 0'"
    records = results.load_trials(tiny_study, "tiny").set_index("trial")
    shown = {t["number"]: t for t in study["trials"]}
    assert set(records.index) <= set(shown), "every recorded trial is there"
    for number, row in records[records["state"] == "COMPLETE"].iterrows():
        trial = shown[number]
        params = {p["name"]: p["param_external_value"] for p in trial["params"]}
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert attrs["assignment"] == row["assignment"] == ",".join(params[k] for k in sorted(params))
        assert trial["values"] == pytest.approx([row["val_loss"], row["tokens_per_s"]])
