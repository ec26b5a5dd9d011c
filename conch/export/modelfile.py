"""The Ollama Modelfile for a GGUF export.

`llamafactory-cli export` already writes a Modelfile beside the merged model, built from the same LLaMA-Factory
template the model was trained with: TEMPLATE in Ollama's Go-template syntax, SYSTEM (the default system
prompt), one `PARAMETER stop` per end-of-turn token. Its `FROM .` (the safetensors directory) changes to
name the .gguf, relative to the Modelfile, so the folder can be moved or copied as a whole; and its fixed
`num_ctx 4096` is capped at the model's trained context (beyond it RoPE positions were never seen).
"""

from __future__ import annotations

from conch.errors import ConchError


class ModelfileError(ConchError):
    pass


def gguf_modelfile(merged_modelfile: str, gguf_name: str, context_length: int, where: str) -> str:
    lines = merged_modelfile.splitlines()
    from_lines = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    for needed in ("FROM ", "TEMPLATE ", "PARAMETER stop "):
        if not any(line.startswith(needed) for line in lines):
            raise ModelfileError(
                f"{where}: no `{needed.strip()}` line; cannot build the GGUF Modelfile from it"
            )
    if len(from_lines) != 1:
        raise ModelfileError(f"{where}: {len(from_lines)} FROM lines, expected one")
    lines[from_lines[0]] = f"FROM ./{gguf_name}"
    for i, line in enumerate(lines):
        if line.startswith("PARAMETER num_ctx ") and int(line.split()[-1]) > context_length:
            lines[i] = f"PARAMETER num_ctx {context_length}"
    header = "# Ollama Modelfile for the GGUF export (conch); use: ollama create NAME -f Modelfile"
    return "\n".join([header, *lines]) + "\n"
