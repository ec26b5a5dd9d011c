"""Deploy manifest + smoke test: start the server on a free loopback port, query it for real, stop it."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

from conch.cluster import gpus
from conch.rag.rag_eval import load_questions
from conch.server.smoke import chat_format_args, free_port, launch_command, running_server, smoke_test

gpu_lease = gpus.assign_for_job(snakemake)  # local runs: this job's own GPUs, before CUDA starts
p, name = snakemake.params, snakemake.wildcards.experiment
model_dir = snakemake.input.model
tokens = min(32, p.max_new_tokens)

# The answer the server must give, computed offline in a child process that exits before the server starts:
# this process never loads the model, so the GPU is wholly the server's.
proc = subprocess.run(
    [sys.executable, "-m", "conch.model.answer", model_dir, p.prompt, str(tokens)],
    capture_output=True,
    text=True,
    check=False,
)
if proc.returncode != 0:
    sys.exit(f"serve: the offline answer of {model_dir} failed:\n{proc.stderr[-3000:]}")
expected = json.loads(proc.stdout.strip().splitlines()[-1])["answer"]

# With the RAG branch on, the knowledge base is served beside the model (/v1/rag/...) and asked the first
# question of rag.questions that names its source documents: one the knowledge base answers.
rag_index = snakemake.input.get("rag_index")
rag_question = None
if rag_index:
    questions = load_questions(snakemake.input.rag_questions)
    rag_question = next((q for q in questions if q["sources"]), None)
    if rag_question is None:
        sys.exit(
            f"serve: {snakemake.input.rag_questions} has no question with sources to smoke-test RAG with"
        )
# The served model renders tool requests and parses reasoning with the template it was trained with.
chat_format = {
    "template": p.template,
    **{k: p.train[k] for k in ("default_system", "tool_format") if k in p.train},
}
limits = (p.max_new_tokens, p.max_batch_size, p.max_queue, rag_index, chat_format)
port = free_port()
command = launch_command(model_dir, name, "127.0.0.1", port, *limits)
open(snakemake.log[0], "w").close()
with running_server(command, f"http://127.0.0.1:{port}", snakemake.log[0]):
    record = smoke_test(f"http://127.0.0.1:{port}", name, p.prompt, expected, tokens, rag_question)
Path(snakemake.output.smoke).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")

launch = ["python", *launch_command(model_dir, name, p.host, p.port, *limits)[1:]]
manifest = {
    "model": name,
    "model_path": model_dir,
    "template": p.template,
    "host": p.host,
    "port": p.port,
    "launch_command": shlex.join(launch),
    "chat_format_args": chat_format_args(chat_format),
    "endpoints": [
        "GET /generate?prompt=",
        "POST /v1/chat/completions",
        "POST /v1/completions",
        "GET /v1/models",
        "GET /health",
        "GET /metrics",
        "GET / (chat page)",
        *(["POST /v1/rag/query", "POST /v1/rag/chat/completions"] if rag_index else []),
    ],
    "api_key": "set CONCH_API_KEY in the server's environment to require `Authorization: Bearer <key>`",
}
Path(snakemake.output.manifest).write_text(json.dumps(manifest, indent=2) + "\n")
if not record["passed"]:
    Path(snakemake.output.smoke).rename(Path(snakemake.output.smoke).with_suffix(".failed.json"))
    failed = [k for k, ok in record["checks"].items() if not ok]
    sys.exit(f"serve: smoke test failed ({', '.join(failed)}); see {snakemake.log[0]}")
