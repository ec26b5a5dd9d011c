"""`make webui`: LLaMA-Factory's web UI (LlamaBoard) on what the workflow built.

Its Train tab opens with the base model selected (path and chat template filled in) and the registered
dataset's splits in its dataset list, so a run can be tried by hand; `to-config` then turns that run's
training_args.yaml into a conch experiment.

LlamaBoard keeps everything relative to the directory it starts in: datasets in `data/` (its
dataset_info.json), its user config in `llamaboard_cache/user_config.yaml` (language, last model, a path
per model name), runs in `saves/`, saved arguments in `llamaboard_config/`. So it runs inside results/webui/,
where `data` links to results/data/<dataset>/, and nothing it writes lands in the repository.

    python -m conch.training.webui [--host 127.0.0.1] [--port 7860] [--no-browser]     # needs results/webui/launch.json
    python -m conch.training.webui to-config results/webui/saves/.../training_args.yaml [--name NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

from conch.errors import ConfigError
from conch.llamafactory.lf import RESERVED_TRAIN_KEYS

WEBUI_DIR = Path("results/webui")
LAUNCH_FILE = WEBUI_DIR / "launch.json"
MODEL_NAME = "conch-base"  # the base model's entry in the UI's model list (and its saves/ folder)


def launch_settings(dataset_info: str, model_path: str, template: str) -> dict:
    """What the UI is opened on (results/webui/launch.json, written by the `webui` rule)."""
    return {
        "dataset_dir": str(Path(dataset_info).parent),
        "datasets": list(json.loads(Path(dataset_info).read_text(encoding="utf-8"))),
        "model_name": MODEL_NAME,
        "model_path": model_path,
        "template": template,
    }


def prepare(settings: dict, webui_dir: Path) -> None:
    """`data` -> the dataset folder, and the user config naming the base model (other settings kept)."""
    data = webui_dir / "data"
    target = os.path.relpath(Path(settings["dataset_dir"]).resolve(), webui_dir.resolve())
    if data.is_symlink():
        data.unlink()
    elif data.exists():
        raise ConfigError(f"{data} is not the link to the dataset this launcher makes; move it away")
    data.symlink_to(target, target_is_directory=True)
    user_config = webui_dir / "llamaboard_cache" / "user_config.yaml"
    saved = yaml.safe_load(user_config.read_text(encoding="utf-8")) if user_config.exists() else None
    config = {"lang": None, "hub_name": None, "cache_dir": None, **(saved or {})}
    config["last_model"] = settings["model_name"]
    config["path_dict"] = {**(config.get("path_dict") or {}), settings["model_name"]: settings["model_path"]}
    user_config.parent.mkdir(parents=True, exist_ok=True)
    user_config.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")


def launch(host: str, port: int | None, browser: bool) -> None:
    settings = json.loads(LAUNCH_FILE.read_text(encoding="utf-8"))
    # Paths in launch.json are relative to the workflow's directory, which we are about to leave.
    settings["model_path"] = str(Path(settings["model_path"]).resolve())
    prepare(settings, WEBUI_DIR)
    os.chdir(WEBUI_DIR)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no calls home
    # The UI trains with `llamafactory-cli` from PATH: this interpreter's, even when its venv is not active.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"

    from llamafactory.extras.constants import DEFAULT_TEMPLATE, DownloadSource, register_model_group
    from llamafactory.extras.misc import fix_proxy
    from llamafactory.webui.interface import create_ui

    # The model list is read when the UI is built: register the base model first, with conch's template
    # (LLaMA-Factory would pick its template only for names ending in -Chat/-Instruct).
    register_model_group({settings["model_name"]: {DownloadSource.DEFAULT: settings["model_path"]}})
    DEFAULT_TEMPLATE[settings["model_name"]] = settings["template"]
    fix_proxy(ipv6_enabled=False)
    print(
        f"LLaMA-Factory web UI on the registered splits {settings['datasets']} and {settings['model_path']}"
    )
    create_ui().queue().launch(server_name=host, server_port=port, inbrowser=browser, share=False)


def to_config(training_args: str, name: str) -> str:
    """A config overlay with the UI run's training keys as experiment `name` (`--configfile` it, or merge it
    into config/config.yaml). The keys conch derives from the DAG (model, dataset, template, output) are
    dropped; keys the UI did not set keep their values from `train`."""
    args = yaml.safe_load(Path(training_args).read_text(encoding="utf-8")) or {}
    if args.get("stage", "sft") != "sft":
        raise ConfigError(
            f"{training_args}: stage {args['stage']!r}; conch runs preference stages through "
            "preference.methods (docs/preference.md), so bring back an SFT run"
        )
    train = {k: v for k, v in args.items() if k not in RESERVED_TRAIN_KEYS}
    header = f"# LLaMA-Factory web UI run {training_args}, as conch experiment {name!r}.\n"
    return header + yaml.safe_dump({"experiments": {name: train}}, allow_unicode=True, sort_keys=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m conch.training.webui", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, help="default: 7860, or the next free one")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    commands = parser.add_subparsers(dest="command")
    back = commands.add_parser("to-config", help="print a UI run's training_args.yaml as a conch experiment")
    back.add_argument("training_args")
    back.add_argument("--name", default="webui", help="experiment name (default: webui)")
    args = parser.parse_args(argv)
    try:
        if args.command == "to-config":
            print(to_config(args.training_args, args.name), end="")
        elif not LAUNCH_FILE.exists():
            raise ConfigError(
                f"{LAUNCH_FILE} is missing: run `make webui` (it builds it) from the workflow's directory"
            )
        else:
            launch(args.host, args.port, not args.no_browser)
    except ConfigError as err:
        sys.exit(f"conch.training.webui: {err}")


if __name__ == "__main__":
    main()
