"""What the server serves: model names mapped to configured paths (merged model, or base + LoRA adapter).

Requests only ever name a model; the path behind a name comes from here, so no request can make the server
read a path of its choosing. A `--config` YAML file looks like:

    models:
      - name: conch                      # merged model
        path: ../results/merged/default/model
        template: qwen                   # its LLaMA-Factory template: tools and reasoning output need it
        default_system: You are a helpful assistant.   # as in training (also tool_format, when set)
      - name: conch-lora                 # base + adapter, applied by peft without merging
        path: ../results/base_model/model
        adapter: ../results/adapters/default/adapter
    default_model: conch                 # used when a request names none (default: the first)
    max_new_tokens: 128                  # cap on max_tokens
    max_batch_size: 16                   # requests generating together, per model
    max_queue: 64                        # requests waiting for a slot before new ones get 503
    max_prefill_tokens: 512              # prompt tokens prefilled per step (longer prompts: in chunks)
    prefix_cache: true                   # reuse the KV of shared prompt prefixes (system prompt, past turns)
    threads: null                        # torch CPU threads per engine process (default: torch's choice)

Relative paths are relative to the config file. Any other ServeSettings field may be set too (host, port,
rag_index, ...); a command-line flag overrides the file's value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from conch.errors import did_you_mean
from conch.llamafactory.lf import known_templates

PositiveInt = Annotated[int, Field(ge=1, strict=True)]


class ServeConfigError(ValueError):
    pass


# The model name when one model is served without naming it (--model without --name).
DEFAULT_NAME = "conch"


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")] = Field(
        description="the model's name: what clients pass as `model`, and what /v1/models lists"
    )
    path: str = Field(description="model directory: a merged model, or the base model with `adapter`")
    adapter: str | None = Field(
        None, description="LoRA adapter directory, applied to the model by peft unmerged"
    )
    # The LLaMA-Factory template (and its training options) the model was fine-tuned with: needed for
    # tools and reasoning output (conch.server.tool_chat); ordinary chats use the tokenizer's chat template.
    template: str | None = Field(
        None,
        description="the LLaMA-Factory template the model was trained with: enables tools and reasoning "
        "output (docs/serving.md)",
    )
    default_system: str | None = Field(None, description="the training's default_system (with template)")
    tool_format: str | None = Field(
        None, description="the training's tool_format, if it set one (with template)"
    )

    @field_validator("template")
    @classmethod
    def _known_template(cls, v):
        known = known_templates()
        if v is not None and known is not None and v not in known:
            raise ValueError(f"{v!r} is not a LLaMA-Factory template{did_you_mean(v, known)}")
        return v


class ServeSettings(BaseModel):
    """Every serve setting and its default, once: the CLI's flags (conch.server.cli), the keys of a --config
    file, and the workflow config's `serve` block (serve_config_schema) are all made from these fields."""

    model_config = ConfigDict(extra="forbid")
    models: Annotated[list[ModelEntry], Field(min_length=1)] = Field(description="the models served")
    default_model: str | None = Field(
        None, description="the model for requests that name none (default: the first)"
    )
    host: str = Field("127.0.0.1", description="bind address (loopback unless you mean otherwise)")
    port: Annotated[int, Field(ge=0, le=65535, strict=True)] = Field(
        8000, description="port (0: any free one)"
    )
    max_new_tokens: PositiveInt = Field(
        128,
        description="cap on a request's max_tokens (larger requests are cut to it; finish_reason `length`)",
    )
    max_batch_size: PositiveInt = Field(
        16, description="requests generating together in one batch, per model (continuous batching)"
    )
    max_queue: Annotated[int, Field(ge=0, strict=True)] = Field(
        64, description="requests waiting for a batch slot before new ones get 503 with Retry-After"
    )
    # A longer prompt is taken in chunks, so generating rows wait at most one chunk's time for their next token.
    max_prefill_tokens: PositiveInt = Field(
        512, description="prompt tokens prefilled per step; longer prompts are taken in chunks"
    )
    context_length: PositiveInt | None = Field(
        None,
        description="tokens of prompt and answer per request (null: the model's max_position_embeddings)",
    )
    max_body_bytes: PositiveInt = Field(1 << 20, description="larger request bodies get 413")
    # Exact up to float rounding, so it is on unless a benchmark wants it off.
    prefix_cache: bool = Field(
        True, description="reuse the KV of shared prompt prefixes (system prompt, past turns)"
    )
    threads: PositiveInt | None = Field(
        None, description="torch CPU threads in each engine process (null: torch's choice)"
    )
    # The key itself never appears in settings or on a command line (ps, logs): only where to find it.
    api_key_env: str = Field(
        "CONCH_API_KEY",
        description="environment variable holding the API key; unset or empty: no key required",
    )
    rag_index: str | None = Field(None, description="RAG index directory: adds the /v1/rag/ endpoints")
    access_log: bool = Field(True, description="log a line per request (off for benchmarks)")

    @model_validator(mode="after")
    def _names(self):
        names = [m.name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"model names must be unique; repeated: {', '.join(duplicates)}")
        if self.default_model is None:
            self.default_model = names[0]
        elif self.default_model not in names:
            raise ValueError(
                f"default_model {self.default_model!r} is not one of the models: {', '.join(names)}"
            )
        return self

    def check_paths(self) -> None:
        for m in self.models:
            for what, p in (("path", m.path), ("adapter", m.adapter)):
                if p is not None and not Path(p).is_dir():
                    raise ServeConfigError(f"model {m.name!r}: {what} {p} is not a directory")


def describe(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(x) for x in e['loc']) or '(top level)'}: {e['msg']}" for e in error.errors()
    )


def load_settings(config_path: str | Path, **overrides) -> ServeSettings:
    path = Path(config_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ServeConfigError(f"serve config {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ServeConfigError(f"serve config {path}: expected a mapping with a `models` list")
    if isinstance(raw.get("rag_index"), str):  # relative to the file, as its model paths are
        raw["rag_index"] = str((path.parent / raw["rag_index"]).resolve())
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        settings = ServeSettings.model_validate(raw)
    except ValidationError as exc:
        raise ServeConfigError(f"serve config {path}: {describe(exc)}") from exc
    for m in settings.models:
        m.path = str((path.parent / m.path).resolve())
        if m.adapter:
            m.adapter = str((path.parent / m.adapter).resolve())
    settings.check_paths()
    return settings


def single_model(
    path: str,
    name: str = DEFAULT_NAME,
    adapter: str | None = None,
    chat_format: dict | None = None,
    **overrides,
) -> ServeSettings:
    """One model; `chat_format`: its template, default_system and tool_format (ModelEntry)."""
    try:
        settings = ServeSettings(
            models=[ModelEntry(name=name, path=path, adapter=adapter, **(chat_format or {}))],
            **{k: v for k, v in overrides.items() if v is not None},
        )
    except ValidationError as exc:
        raise ServeConfigError(describe(exc)) from exc
    settings.check_paths()
    return settings


# Settings the workflow decides itself, or that only a person starting a server has a use for: the config's
# `serve` block does not take them. The RAG branch decides rag_index; the smoke test runs without an API key
# and needs its access log; models and default_model come from the served experiment.
NOT_IN_WORKFLOW_CONFIG = frozenset({"models", "default_model", "rag_index", "api_key_env", "access_log"})


def _plain(prop: dict) -> dict:
    """A pydantic property schema as config/schema.yaml writes one: no titles, and `X | None` as a type list
    (so a bad value is named with X's bounds, "0 is less than the minimum of 1", not "not valid under anyOf")."""
    prop = {k: v for k, v in prop.items() if k != "title"}
    options = prop.pop("anyOf", None)
    if options:
        (value,) = [o for o in options if o != {"type": "null"}]
        prop = {**value, **prop, "type": [value["type"], "null"]}
    return prop


def serve_config_schema() -> dict:
    """The JSON schema of the workflow config's `serve` settings, from ServeSettings: key -> property."""
    props = ServeSettings.model_json_schema()["properties"]
    return {
        name: _plain(props[name]) for name in ServeSettings.model_fields if name not in NOT_IN_WORKFLOW_CONFIG
    }


def with_serve_settings(schema: dict) -> dict:
    """The workflow's config schema (config/schema.yaml, a dict) with ServeSettings' part merged into its
    `serve` block, whose own keys (e.g. `experiment`) stay; in place, and returned."""
    serve = schema["properties"]["serve"]
    twice = set(serve.get("properties", {})) & set(serve_config_schema())
    if twice:
        raise ValueError(f"config/schema.yaml restates serve settings ServeSettings defines: {sorted(twice)}")
    serve["properties"] = {**serve_config_schema(), **serve.get("properties", {})}
    return schema
