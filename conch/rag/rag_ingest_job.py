"""Rule rag_ingest: documents under rag.docs -> results/rag/docs.jsonl, and ingest_stats.json where
found = ingested + skipped."""

import json
from pathlib import Path

from conch.errors import JobFailed
from conch.jobs.files import write_jsonl
from conch.rag.ingest import ingest


def run(output, params, log):
    docs, stats = ingest(params.root)
    write_jsonl(output.docs, docs)
    Path(output.stats).write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with open(log, "w", encoding="utf-8") as fh:
        fh.write(
            f"{stats['found']} file(s) under {stats['root']}: {stats['ingested']} ingested, "
            f"{stats['skipped']} skipped\n"
        )
        for skip in stats["skipped_files"]:
            fh.write(f"skipped {skip['file']}: {skip['reason']}: {skip['detail']}\n")
    if not docs:
        raise JobFailed(
            f"rag_ingest: no document under {params.root} could be ingested "
            f"(see {output.stats}); add Markdown, text, HTML, PDF or JSON/JSONL Q&A files"
        )
