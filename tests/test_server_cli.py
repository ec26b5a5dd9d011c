"""ServeSettings is the one definition of serve settings: the command line is made from its fields, the
manifest's flags and the workflow's --config file start a server with the same settings, and the manifest's
endpoints are the route table's."""

from __future__ import annotations

import pytest
import yaml

from conch.server import cli
from conch.server.deploy import config_file, deployed_settings
from conch.server.route_table import RAG_ROUTE_TABLE, ROUTE_TABLE, endpoints
from conch.server.settings import ModelEntry, ServeConfigError, ServeSettings, load_settings

# Every flag the server had before its flags were made from the settings' fields.
EXISTING_FLAGS = [
    ["--adapter", "a"],
    ["--name", "n"],
    ["--template", "qwen"],
    ["--default-system", "be brief"],
    ["--tool-format", "default"],
    ["--host", "0.0.0.0"],
    ["--port", "0"],
    ["--max-new-tokens", "5"],
    ["--max-batch-size", "2"],
    ["--max-queue", "0"],
    ["--threads", "1"],
    ["--api-key-env", "KEY"],
    ["--rag-index", "idx"],
    ["--no-access-log"],
]


def test_every_field_is_described_and_is_a_flag():
    for model in (ModelEntry, ServeSettings):
        assert all(f.description for f in model.model_fields.values()), model
    parser = cli.build_parser()
    flags = {opt for action in parser._actions for opt in action.option_strings}
    for name in (*cli.MODEL_FLAGS, *cli.SERVER_FLAGS):
        assert cli.flag(name) in flags
    assert {"--model", "--config", "--no-access-log", "--no-prefix-cache"} <= flags


@pytest.mark.parametrize("words", EXISTING_FLAGS, ids=lambda w: w[0])
def test_existing_flags_still_work(words):
    args = cli.parse_args(["--model", "m", *words])
    name = words[0].removeprefix("--").removeprefix("no-").replace("-", "_")
    expected = False if words[0].startswith("--no-") else words[1]
    assert str(getattr(args, name)) == str(expected)


def test_left_out_flags_take_the_fields_defaults():
    args = cli.parse_args(["--model", "m"])
    assert (args.name, args.host, args.port, args.max_new_tokens, args.access_log) == (
        "conch",
        "127.0.0.1",
        8000,
        128,
        True,
    )
    assert args.given == {}


def test_the_manifest_flags_start_the_same_settings(tmp_path):
    (tmp_path / "model").mkdir()
    serve = {"host": "0.0.0.0", "port": 9000, "max_queue": 0, "threads": None, "experiment": "x"}
    chat_format = {"template": None, "default_system": "be brief", "tool_format": None}
    settings = deployed_settings("exp", str(tmp_path / "model"), serve, chat_format, "results/rag/index")
    words = cli.command_line(settings)
    assert words[:4] == ["--model", str(tmp_path / "model"), "--name", "exp"]
    assert "--rag-index" in words and "--threads" not in words
    assert cli.settings_from_args(cli.parse_args(words)) == settings


def test_the_config_file_starts_the_same_settings(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "index").mkdir()
    serve = {"max_new_tokens": 7, "prefix_cache": False, "context_length": None}
    chat_format = {"template": "qwen", "default_system": None, "tool_format": None}
    settings = deployed_settings("exp", str(tmp_path / "model"), serve, chat_format, str(tmp_path / "index"))
    path = tmp_path / "serve" / "serve.yaml"
    path.parent.mkdir()
    doc = config_file(settings, path)
    assert doc["models"] == [{"name": "exp", "path": "../model", "template": "qwen"}]
    assert doc["rag_index"] == "../index" and "context_length" not in doc
    path.write_text(yaml.safe_dump(doc))
    loaded = load_settings(path)
    assert loaded.model_dump() == settings.model_dump()
    # A flag overrides the file.
    args = cli.parse_args(["--config", str(path), "--max-new-tokens", "3", "--port", "0"])
    assert cli.settings_from_args(args).max_new_tokens == 3
    with pytest.raises(ServeConfigError, match="go with --model"):
        cli.settings_from_args(cli.parse_args(["--config", str(path), "--adapter", "a"]))


def test_manifest_endpoints_are_the_route_table():
    assert endpoints(rag=False) == [f"{r.method} {r.path}" for r in ROUTE_TABLE]
    assert endpoints(rag=True)[-2:] == [f"{r.method} {r.path}" for r in RAG_ROUTE_TABLE]
    assert "POST /v1/rag/chat/completions" in endpoints(rag=True)
