"""Secrets in the environment (HF_TOKEN, a mirror's login, the server's API key) never reach a written file.

Every file a run leaves behind is searched byte for byte: results, logs, benchmarks, Snakemake's own logs
and metadata, the rendered configs. A test here fails as soon as any step writes a secret anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import REPO, TINY_RUN_HF_TOKEN, make_workdir, snakemake
from test_base_model import lay_out_hf_cache, scratch_dir  # noqa: F401 - scratch_dir is a fixture
from test_server_support import start_server, tiny_model

pytestmark = pytest.mark.slow


def files_holding(root: Path, *secrets: str, at_least: int = 5) -> list[str]:
    """Every file under `root` that holds one of `secrets`, with what it holds."""
    files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    assert len(files) >= at_least, f"only {len(files)} files under {root}: the run wrote less than it should"
    found = []
    for path in files:
        data = path.read_bytes()
        found += [f"{path.relative_to(root)}: {s[:6]}..." for s in secrets if s.encode() in data]
    return found


def test_a_whole_run_writes_the_token_nowhere(tiny_run):
    """The session's tiny run had HF_TOKEN set (tests/conftest.py) through every rule, server included."""
    assert (tiny_run / "results/serve/default/smoke_test.json").exists()
    assert files_holding(tiny_run, TINY_RUN_HF_TOKEN, at_least=50) == []


def test_fetch_keeps_the_token_and_a_mirror_login_out(tmp_path, scratch_dir):  # noqa: F811
    """A mirror URL with its own password (HF_ENDPOINT) and HF_TOKEN: the manifest and logs hold neither."""
    repo_id = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    hf_home = tmp_path / "hf"
    lay_out_hf_cache(hf_home, repo_id, scratch_dir)
    token, password = "hf_conchFetchSecret_42", "mirrorPassword_77"
    env = {
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "HF_TOKEN": token,
        "HF_ENDPOINT": f"http://conch-ci:{password}@127.0.0.1:9",
    }
    cfg = yaml.safe_load((REPO / "config/deepseek-r1-distill-qwen-1.5b.yaml").read_text(encoding="utf-8"))
    work = make_workdir(tmp_path / "work", cfg)
    snakemake(work, "results/base_model/hf/manifest.json", env=env)
    manifest = json.loads((work / "results/base_model/hf/manifest.json").read_text())
    assert manifest["endpoint"] == "http://<credentials>@127.0.0.1:9"
    assert files_holding(work, token, password) == []


def test_the_api_key_is_never_logged(tmp_path):
    """Right and wrong keys, in every place a client might put one: the server log holds none of them."""
    key, wrong = "sk-conch-RightKey-5150", "sk-conch-WrongKey-8080"
    server = start_server(
        "secrets",
        ["--model", tiny_model(), "--name", "tiny", "--max-new-tokens", "4"],
        {"CONCH_API_KEY": key},
    )
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        assert http.post(
            "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
        ).is_success
        for headers in ({"Authorization": f"Bearer {wrong}"}, {"Authorization": wrong}, {"X-Api-Key": wrong}):
            assert http.post("/v1/chat/completions", json=body, headers=headers).status_code == 401
        # A key in the URL is refused like any other, and the log must not echo it either.
        assert http.get("/v1/models", params={"api_key": wrong}).status_code == 401
        r = http.get("/metrics", headers={"Authorization": f"Bearer {key}"})
        assert r.is_success and key not in r.text
    log = server.log.read_text(encoding="utf-8")
    assert "401" in log, "the refused requests are logged"
    assert key not in log
    assert wrong not in log
