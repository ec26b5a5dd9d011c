"""The command line of `python -m conch.server`, made from the settings' fields (conch.server.settings).

Each ServeSettings field is a flag (`max_new_tokens` -> `--max-new-tokens`, its help and default from the
field; a bool gets `--x` / `--no-x`), and each ModelEntry field but `path` is one for `--model`. A field added
there is a flag here with nothing else to write. `command_line` is the inverse: the flags that start a server
with given settings, as the deployment manifest records them.
"""

from __future__ import annotations

import argparse
import types
import typing

from pydantic.fields import FieldInfo

from conch.server.settings import (
    DEFAULT_NAME,
    ModelEntry,
    ServeConfigError,
    ServeSettings,
    load_settings,
    single_model,
)

# Written by hand: `--model` (ModelEntry.path) and `--config` exclude each other, and what a file lists.
SOURCE_FIELDS = frozenset({"models", "default_model"})
MODEL_FLAGS = tuple(name for name in ModelEntry.model_fields if name != "path")
SERVER_FLAGS = tuple(name for name in ServeSettings.model_fields if name not in SOURCE_FIELDS)
# Defaults the command line has and a --config file does not: a file names each of its models.
CLI_DEFAULTS = {"name": DEFAULT_NAME}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _value_type(field: FieldInfo) -> type:
    """int for `int`, `Annotated[int, ...]` and `int | None`: what argparse converts the text to."""
    annotation = field.annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    return annotation


def _add(group, name: str, field: FieldInfo) -> None:
    default = CLI_DEFAULTS.get(name, field.default)
    shown = "" if default is None else f" (default: {default})"
    kind = _value_type(field)
    # Defaults stay None here: a flag left out must not override a --config file's value (parse_args fills
    # them in afterwards).
    if kind is bool:
        group.add_argument(flag(name), action=argparse.BooleanOptionalAction, help=field.description + shown)
    else:
        group.add_argument(flag(name), type=kind, help=field.description + shown)


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conch.server",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help=ModelEntry.model_fields["path"].description)
    source.add_argument(
        "--config",
        help="YAML file listing several models, and any setting below (conch/server/settings.py); "
        "a flag overrides the file's value",
    )
    model = parser.add_argument_group("the model, with --model")
    for name in MODEL_FLAGS:
        _add(model, name, ModelEntry.model_fields[name])
    server = parser.add_argument_group("serving")
    for name in SERVER_FLAGS:
        _add(server, name, ServeSettings.model_fields[name])
    return parser


def parse_args(argv=None, description: str | None = None) -> argparse.Namespace:
    """The arguments, every setting filled in; `given` holds the serving settings given on the command line."""
    args = build_parser(description).parse_args(argv)
    args.given = {name: getattr(args, name) for name in SERVER_FLAGS if getattr(args, name) is not None}
    for name in (*MODEL_FLAGS, *SERVER_FLAGS):
        if getattr(args, name) is None:
            field = (ModelEntry.model_fields | ServeSettings.model_fields)[name]
            setattr(args, name, CLI_DEFAULTS.get(name, field.default))
    return args


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    """ServeSettings from parsed arguments; ServeConfigError saying what is wrong."""
    chat_format = {
        "template": args.template,
        "default_system": args.default_system,
        "tool_format": args.tool_format,
    }
    if args.config:
        if args.adapter or any(chat_format.values()):
            raise ServeConfigError(
                "--adapter, --template, --default-system and --tool-format go with --model; in a "
                "--config file, give each model its own keys"
            )
        return load_settings(args.config, **args.given)
    return single_model(args.model, args.name, args.adapter, chat_format, **args.given)


def command_line(settings: ServeSettings) -> list[str]:
    """The flags that start a server on `settings`' one model: each setting that was given, not defaulted."""
    if len(settings.models) != 1:
        raise ValueError("a command line serves one model; several need a --config file")
    (entry,) = settings.models
    model = entry.model_dump(exclude_none=True)
    served = settings.model_dump(include=set(settings.model_fields_set) - SOURCE_FIELDS, exclude_none=True)
    words = [flag("model"), model.pop("path")]
    for name, value in [*model.items(), *((n, served[n]) for n in SERVER_FLAGS if n in served)]:
        if isinstance(value, bool):
            words.append(flag(name) if value else flag(f"no_{name}"))
        else:
            words += [flag(name), str(value)]
    return words


def chat_format_args(chat_format: dict | None) -> list[str]:
    """`--template qwen --default-system ...` for {"template": "qwen", "default_system": ...}."""
    items = (chat_format or {}).items()
    return [x for key, value in items if value is not None for x in (flag(key), str(value))]
