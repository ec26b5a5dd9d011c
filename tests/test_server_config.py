"""Starting the server: config files and CLI mistakes are reported clearly; a model that fails to load stops it."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import psutil
import pytest
import yaml
from test_server_support import start_server, tiny_model

from conch.server.settings import ServeConfigError, load_settings


def write(tmp_path, config) -> str:
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config) if not isinstance(config, str) else config)
    return str(path)


def test_config_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "models" / "a").mkdir(parents=True)
    settings = load_settings(write(tmp_path, {"models": [{"name": "a", "path": "models/a"}], "max_queue": 0}))
    assert settings.models[0].path == str(tmp_path / "models" / "a")
    assert settings.default_model == "a" and settings.max_queue == 0


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"models": []}, "models: List should have at least 1 item"),
        (
            {"models": [{"name": "a", "path": "."}], "max_batch": 4},
            "max_batch: Extra inputs are not permitted",
        ),
        ({"models": [{"name": "a", "path": ".", "adaptor": "x"}]}, "models.0.adaptor: Extra inputs"),
        ({"models": [{"name": "a", "path": "."}, {"name": "a", "path": "."}]}, "repeated: a"),
        ({"models": [{"name": "a", "path": "."}], "default_model": "b"}, "default_model 'b' is not one of"),
        ({"models": [{"name": "a", "path": "missing"}]}, "model 'a': path"),
        ({"models": [{"name": "../a", "path": "."}]}, "models.0.name: String should match pattern"),
        (
            {"models": [{"name": "a", "path": "."}], "max_new_tokens": "many"},
            "max_new_tokens: Input should be",
        ),
        ("models: [", "serve config"),
        ("- just a list", "expected a mapping"),
    ],
)
def test_bad_config_files_name_the_problem(tmp_path, config, words):
    with pytest.raises(ServeConfigError) as error:
        load_settings(write(tmp_path, config))
    assert words in str(error.value)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "conch.server", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_reports_config_errors_and_exits(tmp_path):
    proc = run_cli("--config", write(tmp_path, {"models": [{"name": "a", "path": "nowhere"}]}))
    assert proc.returncode != 0 and "model 'a': path" in proc.stderr and "nowhere" in proc.stderr
    proc = run_cli("--model", "m", "--config", "x.yaml")
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr


@pytest.mark.slow
def test_a_model_that_cannot_load_stops_the_server(tmp_path):
    (tmp_path / "not_a_model").mkdir()
    proc = run_cli("--model", str(tmp_path / "not_a_model"), "--port", "0")
    assert proc.returncode != 0
    assert "loading the models failed" in proc.stderr


@pytest.mark.slow
def test_a_dead_engine_process_fails_its_requests_and_health():
    """The model runs in a child process; if it dies, in-flight requests end with an error, new ones get 503
    and /health stops saying ok, while the server itself keeps answering."""
    server = start_server("engine-crash", ["--model", tiny_model(), "--name", "tiny"])
    children = psutil.Process(server.proc.pid).children(recursive=True)
    engine = next(p for p in children if "spawn_main" in " ".join(p.cmdline()))  # multiprocessing's spawn
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 480,
        "stream": True,
    }
    # Stopped first, so the request is surely still in flight when the engine dies: on an idle machine the
    # tiny model could otherwise finish all its tokens between the first chunk and the kill.
    engine.suspend()
    with httpx.stream("POST", f"{server.base_url}/v1/chat/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        next(lines)  # the role chunk, sent before any token
        engine.kill()
        rest = [line for line in lines if line]
    assert '"error"' in rest[-2] and rest[-1] == "data: [DONE]"
    health = httpx.get(f"{server.base_url}/health", timeout=10)
    assert health.status_code == 503 and "exited" in json.dumps(health.json())
    r = httpx.post(f"{server.base_url}/v1/chat/completions", json={**body, "stream": False}, timeout=10)
    assert r.status_code == 503 and "not available" in r.json()["error"]["message"]
