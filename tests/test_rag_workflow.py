"""The RAG branch inside the real DAG: built by `snakemake` (all), rebuilt after one document changes with
only that document's chunks embedded again, and left out when rag.enabled is false."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml
from conftest import REPO, make_workdir, planned_jobs, snakemake, tiny_config

pytestmark = pytest.mark.slow


def test_all_builds_the_knowledge_base_and_its_eval(tiny_run):
    stats = json.loads((tiny_run / "results/rag/ingest_stats.json").read_text())
    assert stats["found"] == stats["ingested"] + stats["skipped"] and stats["ingested"] >= 30
    meta = json.loads((tiny_run / "results/rag/index/meta.json").read_text())
    chunks = (tiny_run / "results/rag/chunks.jsonl").read_text().splitlines()
    assert meta["n_chunks"] == len(chunks) and meta["max_context_tokens"] == 1024
    assert (tiny_run / "results/rag/index/tokenizer/tokenizer.json").exists()
    assert (tiny_run / "results/rag/cache/embeddings.sqlite").exists()
    metrics = json.loads((tiny_run / "results/rag/eval/default/retrieval_metrics.json").read_text())
    assert metrics["recall_at_k"] >= 0.9 and metrics["no_answer"] >= 0.8
    assert metrics["answers"]["generated"] == 6 and metrics["answers"]["citation_rate"] is not None
    assert "| mrr |" in (tiny_run / "results/rag/eval/default/report.md").read_text()


def test_the_served_endpoint_answers_from_the_knowledge_base(tiny_run):
    """With the branch on, `serve` starts the server with the index and queries the RAG endpoints for real."""
    manifest = json.loads((tiny_run / "results/serve/default/manifest.json").read_text())
    assert "--rag-index results/rag/index" in manifest["launch_command"]
    assert "POST /v1/rag/chat/completions" in manifest["endpoints"]
    smoke = json.loads((tiny_run / "results/serve/default/smoke_test.json").read_text())
    rag_checks = {k: v for k, v in smoke["checks"].items() if k.startswith("rag_")}
    assert len(rag_checks) == 6 and all(rag_checks.values()), smoke
    # Asked a question the knowledge base answers (the first of kb/questions.jsonl with sources), the served
    # index found a chunk of its source document, and the answer came from the knowledge base with that
    # document among its numbered sources, not the canned "I don't know".
    first = next(
        q for q in map(json.loads, (REPO / "kb/questions.jsonl").read_text().splitlines()) if q["sources"]
    )
    assert smoke["rag_question"] == first["question"], smoke
    assert smoke["rag_hits"] >= 1 and set(first["sources"]) & set(smoke["rag_hit_sources"]), smoke
    assert set(first["sources"]) & set(smoke["rag_chat_references"]), smoke
    assert smoke["rag_chat_content"] and not smoke["rag_chat_content"].startswith("I don't know"), smoke


def test_one_changed_document_reembeds_only_its_chunks(tiny_run_copy):
    snakemake(
        tiny_run_copy, "--touch"
    )  # whatever else changed in the tree since the run, only kb/ changes now
    kb = tiny_run_copy / "kb"
    shutil.copytree(REPO / "kb", kb)  # a workdir's own kb/ takes precedence over the example one
    doc = kb / "docs/lore/goo-lagoon.txt"
    doc.write_text(doc.read_text() + "\nA kelp shake stand opened beside the lifeguard tower.\n")
    (kb / "docs/lore/notes.txt").write_bytes(b"\x00\x01binary")
    (kb / "docs/lore/sandy2.md").write_bytes((kb / "docs/lore/sandy.md").read_bytes())

    jobs = planned_jobs(tiny_run_copy)
    assert {"rag_ingest", "rag_chunk", "rag_index", "rag_eval"} <= set(jobs), jobs
    assert not {"train_adapter", "merge_adapter", "evaluate"} & set(jobs), jobs
    snakemake(tiny_run_copy, "results/rag/index")

    stats = json.loads((tiny_run_copy / "results/rag/ingest_stats.json").read_text())
    assert stats["skipped_by_reason"] == {"binary": 1, "duplicate": 1}
    assert stats["found"] == stats["ingested"] + stats["skipped"]
    chunks = [
        json.loads(line) for line in (tiny_run_copy / "results/rag/chunks.jsonl").read_text().splitlines()
    ]
    changed = [c for c in chunks if c["source"] == "lore/goo-lagoon.txt"]
    log = (tiny_run_copy / "logs/rag/index.log").read_text()
    embedded, cached = map(int, re.search(r"embedded (\d+) .* (\d+) from the cache", log).groups())
    assert 1 <= embedded <= len(changed) and embedded + cached == len(chunks), log


def test_disabled_branch_is_left_out_of_all(tmp_path):
    cfg = tiny_config()
    cfg["rag"]["enabled"] = False
    jobs = planned_jobs(make_workdir(tmp_path, cfg))
    assert "train_adapter" in jobs and not [rule for rule in jobs if rule.startswith("rag_")], jobs
    cfg["rag"] = {"enabled": True, "chunk_tokens": 8}
    (tmp_path / "config/config.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    proc = snakemake(tmp_path, "-n", check=False)
    assert proc.returncode != 0 and "rag.chunk_tokens" in proc.stdout + proc.stderr
