"""Hub access of the command line (models/hub.py): online unless the user says offline or the hub
cannot be reached. The hub is a real HTTP server on localhost (HF_ENDPOINT) or a closed local port;
the CLI runs in a subprocess with HF_HUB_OFFLINE and HF_DATASETS_OFFLINE unset."""
from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from models.hub import OFFLINE_VARS, choose_mode

ROOT = Path(__file__).resolve().parents[1]
CLOSED_PORT = "http://127.0.0.1:9"  # discard port: nothing listens, connections are refused


class _Hub(http.server.BaseHTTPRequestHandler):
    """Answers every request 404 (no such repo) and records its path."""
    paths: list[str]

    def _answer(self):
        self.paths.append(self.path)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def hub():
    """(endpoint URL, list of requested paths) of a local HTTP server."""
    handler = type("Hub", (_Hub,), {"paths": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.paths
    server.shutdown()
    server.server_close()


def hwsim(*args: str, endpoint: str, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARS}
    env.update(PYTHONPATH=str(ROOT), HF_ENDPOINT=endpoint, HF_HOME=str(home / "hf"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "hwsim.app.cli", *args], cwd=home, env=env,
                          capture_output=True, text=True, timeout=120)


def test_unreachable_hub_fails_fast_offline(tmp_path):
    t0 = time.monotonic()
    done = hwsim("data", "sst2", endpoint=CLOSED_PORT, home=tmp_path)
    elapsed = time.monotonic() - t0
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert f"hub {CLOSED_PORT} is unreachable" in done.stderr and "working offline" in done.stderr
    assert "hwsim data: error: cannot load glue/sst2: offline mode is on" in done.stderr
    assert "--data-dir" in done.stderr and "Traceback" not in done.stderr
    assert elapsed < 30, elapsed  # the probe (<= 2.5 s) plus start-up; the hub's retries took ~27 s alone


def test_reachable_hub_stays_online(tmp_path, hub):
    url, paths = hub
    done = hwsim("data", "sst2", endpoint=url, home=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)  # the local hub has no glue
    assert "offline" not in done.stderr, done.stderr
    assert paths[0] == "/"  # the probe
    assert any(p.startswith("/datasets/glue") for p in paths), paths  # datasets went online


def test_choose_mode_leaves_variables_when_probe_succeeds(hub, monkeypatch):
    url, paths = hub
    for var in OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", url)
    choose_mode(offline_flag=False, needs_hub=True)
    assert paths == ["/"]
    assert not any(var in os.environ for var in OFFLINE_VARS)


def test_offline_flag_never_contacts_hub(tmp_path, hub):
    url, paths = hub
    done = hwsim("--offline", "data", "sst2", endpoint=url, home=tmp_path)
    assert done.returncode == 2 and "offline mode is on" in done.stderr, done.stderr
    assert paths == []
    done = hwsim("data", "sst2", "--offline", endpoint=url, home=tmp_path)  # after the subcommand too
    assert done.returncode == 2 and "offline mode is on" in done.stderr, done.stderr
    assert paths == []


def test_local_task_does_not_probe(tmp_path, hub, monkeypatch):
    url, paths = hub
    for var in OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", url)
    choose_mode(offline_flag=False, needs_hub=False)  # e.g. `hwsim data rt`, `hwsim run --text`
    assert paths == [] and not any(var in os.environ for var in OFFLINE_VARS)


def test_user_variables_stand(hub, monkeypatch):
    url, paths = hub
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    choose_mode(offline_flag=False, needs_hub=True)
    assert paths == [] and os.environ["HF_HUB_OFFLINE"] == "0" and "HF_DATASETS_OFFLINE" not in os.environ
