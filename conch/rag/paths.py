"""Where the workflow finds the knowledge base: used by rules/rag.smk when the DAG is built."""

from __future__ import annotations

import os


def resolve(path: str, basedir: str) -> str:
    """A relative path is looked up in the working directory, then beside the Snakefile (`basedir`), so a
    deployed workdir that has no kb/ of its own still builds the example knowledge base."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    beside = os.path.join(basedir, path)
    return beside if os.path.exists(beside) else path


def document_files(root: str) -> list[str]:
    """Every file under `root`, so adding, changing or removing a document reruns ingest."""
    return sorted(os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names)
