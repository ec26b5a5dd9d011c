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

Relative paths are relative to the config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from conch.errors import did_you_mean
from conch.training.lf import known_templates

PositiveInt = Annotated[int, Field(ge=1, strict=True)]


class ServeConfigError(ValueError):
    pass


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]
    path: str
    adapter: str | None = None
    # The LLaMA-Factory template (and its training options) the model was fine-tuned with: needed for
    # tools and reasoning output (conch.server.tool_chat); ordinary chats use the tokenizer's chat template.
    template: str | None = None
    default_system: str | None = None
    tool_format: str | None = None

    @field_validator("template")
    @classmethod
    def _known_template(cls, v):
        known = known_templates()
        if v is not None and known is not None and v not in known:
            raise ValueError(f"{v!r} is not a LLaMA-Factory template{did_you_mean(v, known)}")
        return v


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: Annotated[list[ModelEntry], Field(min_length=1)]
    default_model: str | None = None
    max_new_tokens: PositiveInt = 128
    max_batch_size: PositiveInt = 16
    max_queue: Annotated[int, Field(ge=0, strict=True)] = 64
    # Prompt tokens prefilled per step: a longer prompt is taken in chunks, so generating rows wait at most
    # one chunk's time for their next token.
    max_prefill_tokens: PositiveInt = 512
    context_length: PositiveInt | None = None
    max_body_bytes: PositiveInt = 1 << 20
    # Reuse the KV of prompt prefixes seen before (system prompt, earlier turns); exact up to float rounding.
    prefix_cache: bool = True
    # torch CPU threads in each engine process (default: torch's choice).
    threads: PositiveInt | None = None

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
    path: str, name: str = "conch", adapter: str | None = None, chat_format: dict | None = None, **overrides
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
