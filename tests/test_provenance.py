"""Run manifests pin what a result came from: the whole package set, a dirty tree's diff, the weights."""

from __future__ import annotations

import hashlib
import re
import subprocess
from importlib import metadata

import pytest

from conch.workflow.provenance import git_state, package_set, weights_sha256


def test_the_package_set_covers_every_installed_distribution():
    recorded = package_set()
    installed = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in metadata.distributions()}
    names = {pin.split("==")[0] for pin in recorded["pins"]}
    assert names == installed and recorded["count"] == len(recorded["pins"]) > 100
    # Not a handful of headline versions: the dependencies of the dependencies are in it too.
    assert {"torch", "llamafactory", "jinja2", "pyyaml", "safetensors", "bitsandbytes"} <= names
    expected = hashlib.sha256("\n".join(sorted(recorded["pins"])).encode()).hexdigest()
    assert recorded["sha256"] == expected


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_a_dirty_tree_records_a_hash_of_its_diff(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "rules.smk").write_text("rule a:\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    clean = git_state(tmp_path)
    assert clean["dirty"] is False and clean["diff_sha256"] is None and len(clean["commit"]) == 40

    (tmp_path / "rules.smk").write_text("rule a:\n    threads: 2\n")
    first = git_state(tmp_path)
    assert first["dirty"] is True and first["commit"] == clean["commit"]
    assert first["diff_sha256"] == git_state(tmp_path)["diff_sha256"]  # the same edit, the same hash
    (tmp_path / "rules.smk").write_text("rule a:\n    threads: 3\n")
    assert git_state(tmp_path)["diff_sha256"] not in (None, first["diff_sha256"])


def test_no_git_checkout_records_nulls(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None, "diff_sha256": None}


def test_weights_hash_covers_every_weight_file_and_nothing_else(tmp_path):
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"a" * 100)
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"b" * 100)
    (tmp_path / "config.json").write_text("{}")
    first = weights_sha256(tmp_path)
    assert set(first["files"]) == {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}
    (tmp_path / "config.json").write_text('{"x": 1}')
    assert weights_sha256(tmp_path) == first
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"b" * 99 + b"c")  # one byte
    assert weights_sha256(tmp_path)["sha256"] != first["sha256"]
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert weights_sha256(gguf)["files"] == {"m.gguf": hashlib.sha256(b"GGUF").hexdigest()}
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no weight file"):
        weights_sha256(tmp_path / "empty")
