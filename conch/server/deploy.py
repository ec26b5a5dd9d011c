"""The `serve` rule's work: the served model's settings as a --config file, a live smoke test of the server
started from that file, and the deployment manifest (how to start it, what it answers).

workflow_scripts/serve.py only reads the rule's params into `run`.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from conch.errors import ConchError
from conch.server.cli import chat_format_args, command_line
from conch.server.route_table import endpoints
from conch.server.settings import ServeConfigError, ServeSettings, single_model
from conch.server.smoke import free_port, running_server, smoke_test

# Tokens the smoke test asks for: enough to compare with the offline answer, few enough to be quick.
SMOKE_TOKENS = 32


class DeployError(ConchError):
    pass


def deployed_settings(
    name: str, model_dir: str, serve: dict, chat_format: dict, rag_index: str | None
) -> ServeSettings:
    """The settings the workflow serves `model_dir` with: the config's `serve` block (its ServeSettings
    keys; `experiment` and other workflow keys are the workflow's), the model's chat format, the RAG index."""
    given = {k: v for k, v in serve.items() if k in ServeSettings.model_fields}
    try:
        return single_model(model_dir, name, chat_format=chat_format, rag_index=rag_index, **given)
    except ServeConfigError as exc:
        raise DeployError(str(exc)) from None


def config_file(settings: ServeSettings, path: Path) -> dict:
    """The --config file's content for `settings`: what was given, paths relative to the file."""
    doc = settings.model_dump(include=settings.model_fields_set - {"default_model"}, exclude_none=True)
    for model in doc["models"]:
        for key in ("path", "adapter"):
            if key in model:
                model[key] = os.path.relpath(model[key], path.parent)
    if "rag_index" in doc:
        doc["rag_index"] = os.path.relpath(doc["rag_index"], path.parent)
    return doc


def offline_answer(model_dir: str, prompt: str, tokens: int) -> str:
    """The model's greedy answer, from a child process that exits before the server starts: this process
    never loads the model, so the GPU is wholly the server's."""
    proc = subprocess.run(
        [sys.executable, "-m", "conch.model.answer", model_dir, prompt, str(tokens)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise DeployError(f"the offline answer of {model_dir} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["answer"]


def rag_smoke_question(questions_path: str) -> dict:
    """The first question of rag.questions that names its source documents: one the knowledge base answers."""
    from conch.rag.rag_eval import load_questions

    question = next((q for q in load_questions(questions_path) if q["sources"]), None)
    if question is None:
        raise DeployError(f"{questions_path} has no question with sources to smoke-test RAG with")
    return question


def run(
    *,
    experiment: str,
    model_dir: str,
    serve: dict,
    chat_format: dict,
    prompt: str,
    rag_index: str | None,
    rag_questions: str | None,
    config_path: str,
    manifest_path: str,
    smoke_path: str,
    log_path: str,
) -> None:
    """Write the --config file, smoke-test a server started from it, write the manifest; DeployError if the
    server does not answer as the model does offline."""
    settings = deployed_settings(experiment, model_dir, serve, chat_format, rag_index)
    tokens = min(SMOKE_TOKENS, settings.max_new_tokens)
    expected = offline_answer(model_dir, prompt, tokens)
    rag_question = rag_smoke_question(rag_questions) if rag_index else None
    config = Path(config_path)
    config.write_text(yaml.safe_dump(config_file(settings, config), sort_keys=False, allow_unicode=True))

    port = free_port()
    # Started from the file the manifest hands on, as a user would, only on a free loopback port.
    command = [sys.executable, "-m", "conch.server", "--config", str(config), "--host", "127.0.0.1"]
    with running_server([*command, "--port", str(port)], f"http://127.0.0.1:{port}", log_path):
        record = smoke_test(f"http://127.0.0.1:{port}", experiment, prompt, expected, tokens, rag_question)
    Path(smoke_path).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")

    manifest = {
        "model": experiment,
        "model_path": model_dir,
        "template": chat_format.get("template"),
        "host": settings.host,
        "port": settings.port,
        "launch_command": shlex.join(["python", "-m", "conch.server", *command_line(settings)]),
        "serve_config": str(config),
        "config_launch_command": shlex.join(["python", "-m", "conch.server", "--config", str(config)]),
        "chat_format_args": chat_format_args(chat_format),
        "endpoints": endpoints(rag=bool(rag_index)),
        "api_key": f"set {settings.api_key_env} in the server's environment to require "
        "`Authorization: Bearer <key>`",
    }
    Path(manifest_path).write_text(json.dumps(manifest, indent=2) + "\n")
    if not record["passed"]:
        Path(smoke_path).rename(Path(smoke_path).with_suffix(".failed.json"))
        failed = [k for k, ok in record["checks"].items() if not ok]
        raise DeployError(f"smoke test failed ({', '.join(failed)}); see {log_path}")
