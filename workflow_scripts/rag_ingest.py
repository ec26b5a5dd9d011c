"""Documents under rag.docs -> results/rag/docs.jsonl, and ingest_stats.json where found = ingested + skipped."""

import json
from pathlib import Path

from conch.rag.ingest import ingest
from conch.workflow.files import write_jsonl

docs, stats = ingest(snakemake.params.root)
write_jsonl(snakemake.output.docs, docs)
Path(snakemake.output.stats).write_text(
    json.dumps(stats, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
)
with open(snakemake.log[0], "w", encoding="utf-8") as log:
    log.write(
        f"{stats['found']} file(s) under {stats['root']}: {stats['ingested']} ingested, "
        f"{stats['skipped']} skipped\n"
    )
    for skip in stats["skipped_files"]:
        log.write(f"skipped {skip['file']}: {skip['reason']}: {skip['detail']}\n")
if not docs:
    raise SystemExit(
        f"rag_ingest: no document under {snakemake.params.root} could be ingested "
        f"(see {snakemake.output.stats}); add Markdown, text, HTML, PDF or JSON/JSONL Q&A files"
    )
