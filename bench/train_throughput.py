"""Training throughput: the workflow's `train_adapter` vs `llamafactory-cli train` run directly, and with vs
without LLaMA-Factory's sequence packing, on the default data.

    .venv/bin/python bench/train_throughput.py --repeats 3 [--epochs 3] [--out bench/train_throughput.json]

Tokens are the non-padding tokens the trainer saw (`include_num_input_tokens_seen: non_padding`), so packed and
padded runs are compared on the same useful work. Every variant trains the same YAML (the one `train_adapter`
writes); runs are interleaved (A B C, A B C, ...) so a change in machine load hits every variant alike, and
the load average is recorded beside each run. Reported: medians of wall time and of CPU time (user+system
of the command and all it waited for); on a shared machine the CPU time is the fairer measure of overhead.

- workflow: `snakemake <adapter>` after removing the adapter directory, timed around the whole command (DAG parse,
  scheduling, the rule's script and llamafactory-cli): what a user waits for.
- job:      the same runs, as the `train_adapter` job's own `benchmark:` file measures them (its script and
  llamafactory-cli, without Snakemake's start-up, which a workflow pays once however many jobs it runs).
- direct:   `llamafactory-cli train <that YAML>` into another output_dir.
- packing:  the same, plus `packing: true`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(cmd: list[str], cwd: Path, log: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and every process it waited for)."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    env.setdefault("DISABLE_VERSION_CHECK", "1")
    start, cpu_start = time.perf_counter(), os.times()
    with log.open("w", encoding="utf-8") as fh:
        proc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=env, check=False)
    elapsed, cpu_end = time.perf_counter() - start, os.times()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed; see {log}")
    cpu = (cpu_end.children_user - cpu_start.children_user) + (
        cpu_end.children_system - cpu_start.children_system
    )
    return elapsed, cpu


def snakemake(workdir: Path, *targets: str) -> list[str]:
    return [
        str(BIN / "snakemake"),
        "-s",
        str(REPO / "Snakefile"),
        "-d",
        str(workdir),
        "--cores",
        "2",
        *targets,
    ]


def tokens_seen(output_dir: Path) -> tuple[int, float]:
    """(non-padding tokens trained on, seconds of the Trainer's own training loop)."""
    state = json.loads((output_dir / "trainer_state.json").read_text())
    results = json.loads((output_dir / "all_results.json").read_text())
    return int(state["num_input_tokens_seen"]), float(results["train_runtime"])


def setup(workdir: Path, epochs: float | None) -> dict:
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text(encoding="utf-8"))
    cfg["experiments"] = {"default": {}}
    cfg.pop("grid", None)
    cfg["train"]["include_num_input_tokens_seen"] = "non_padding"
    if epochs:
        cfg["train"]["num_train_epochs"] = epochs
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    for raw in cfg["data"]["raw"]:
        (workdir / raw).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / raw, workdir / raw)
    return cfg


def job_benchmark(tsv: Path) -> dict:
    """Wall and CPU seconds of the last train_adapter job, from the file its `benchmark:` directive writes."""
    header, values = tsv.read_text(encoding="utf-8").splitlines()[:2]
    row = dict(zip(header.split("\t"), values.split("\t"), strict=True))
    return {"seconds": float(row["s"]), "cpu_s": float(row["cpu_time"])}


def load() -> float:
    return os.getloadavg()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=float, help="override train.num_train_epochs (default: the config's)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/conch-bench-train"))
    ap.add_argument("--out", type=Path, help="write every run and the medians here as JSON")
    args = ap.parse_args()

    work = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cfg = setup(work, args.epochs)
    adapter = "results/adapters/default/adapter_model.safetensors"
    print(f"preparing data, base model and a first training in {work} ...", flush=True)
    run(snakemake(work, adapter), work, work / "setup.log")

    train_yaml = yaml.safe_load((work / "results/adapters/default/train_config.yaml").read_text())
    variants = {}
    for name, extra in (("direct", {}), ("packing", {"packing": True})):
        out_dir = work / "direct" / name
        path = work / "direct" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({**train_yaml, **extra, "output_dir": str(out_dir)}), encoding="utf-8")
        variants[name] = ([str(BIN / "llamafactory-cli"), "train", str(path)], out_dir)
    # Its output_dir is removed before each run, so Snakemake reruns exactly train_adapter.
    variants["workflow"] = (snakemake(work, adapter), work / "results/adapters/default")

    runs = []
    for repeat in range(args.repeats):
        for name in ("workflow", "direct", "packing"):
            cmd, out_dir = variants[name]
            # A fresh output_dir every time: LLaMA-Factory would otherwise resume from the last checkpoint.
            shutil.rmtree(out_dir, ignore_errors=True)
            before = load()
            seconds, cpu = run(cmd, work, work / f"{name}-{repeat}.log")
            tokens, loop_s = tokens_seen(out_dir)
            run_record = {
                "variant": name,
                "repeat": repeat,
                "seconds": seconds,
                "cpu_s": cpu,
                "loop_s": loop_s,
            }
            runs.append({**run_record, "tokens": tokens, "load1": before})
            if name == "workflow":
                job = job_benchmark(work / "benchmarks/train_adapter/default.tsv")
                runs.append({**run_record, "variant": "job", **job, "tokens": tokens, "load1": before})
            print(
                f"{name:8} #{repeat}: {seconds:7.1f} s wall {cpu:7.1f} s CPU {tokens / seconds:7.0f} tok/s"
                f"  load {before:.2f}",
                flush=True,
            )

    def median(name: str, value) -> float:
        return statistics.median(value(r) for r in runs if r["variant"] == name)

    med = {
        name: {
            "seconds": median(name, lambda r: r["seconds"]),
            "cpu_s": median(name, lambda r: r["cpu_s"]),
            "tokens_per_s": median(name, lambda r: r["tokens"] / r["seconds"]),
            "tokens": median(name, lambda r: r["tokens"]),
            "loop_tokens_per_s": median(name, lambda r: r["tokens"] / r["loop_s"]),
            # everything but the training loop: imports, model and data loading, saving, the workflow
            "outside_loop_s": median(name, lambda r: r["seconds"] - r["loop_s"]),
        }
        for name in (*variants, "job")
    }
    overhead_s = med["workflow"]["seconds"] - med["direct"]["seconds"]
    overhead = overhead_s / med["direct"]["seconds"]
    # CPU time is what the workflow adds on a shared machine, where wall time mostly measures the neighbours.
    overhead_cpu = med["workflow"]["cpu_s"] / med["direct"]["cpu_s"] - 1
    job_overhead = med["job"]["seconds"] / med["direct"]["seconds"] - 1
    job_overhead_cpu = med["job"]["cpu_s"] / med["direct"]["cpu_s"] - 1
    # The Trainer's own clock: what the workflow costs while training, apart from the fixed start-up.
    loop_overhead = med["direct"]["loop_tokens_per_s"] / med["workflow"]["loop_tokens_per_s"] - 1
    fixed_s = med["workflow"]["outside_loop_s"] - med["direct"]["outside_loop_s"]
    job_fixed_s = med["job"]["outside_loop_s"] - med["direct"]["outside_loop_s"]
    speedup = med["packing"]["tokens_per_s"] / med["direct"]["tokens_per_s"]
    print(f"\nmedians of {args.repeats} runs, {cfg['train']['num_train_epochs']} epochs on the default data:")
    print(
        "| variant | wall s | CPU s | tokens | tokens/s (wall) | tokens/s (training loop) |\n"
        "|---|---:|---:|---:|---:|---:|"
    )
    for name in ("workflow", "job", "direct", "packing"):
        m = med[name]
        print(
            f"| {name} | {m['seconds']:.1f} | {m['cpu_s']:.1f} | {m['tokens']:.0f} | {m['tokens_per_s']:.0f} "
            f"| {m['loop_tokens_per_s']:.0f} |"
        )
    print(
        f"workflow overhead: wall {overhead_s:+.1f} s = {100 * overhead:+.1f}%, CPU {100 * overhead_cpu:+.1f}%"
    )
    print(f"train_adapter job overhead: wall {100 * job_overhead:+.1f}%, CPU {100 * job_overhead_cpu:+.1f}%")
    print(
        f"training loop (tokens/s by the Trainer's train_runtime): {100 * loop_overhead:+.1f}% slower in the workflow"
    )
    print(
        f"fixed cost outside the training loop: {job_fixed_s:+.2f} s for the train_adapter job "
        f"({100 * job_fixed_s / med['direct']['seconds']:+.1f}% of the direct run), {fixed_s:+.2f} s for the "
        "whole snakemake command"
    )
    print(
        f"packing: {speedup:.2f}x tokens/s; load average during runs: {min(r['load1'] for r in runs):.1f}"
        f"-{max(r['load1'] for r in runs):.1f} on {os.cpu_count()} CPUs"
    )
    if args.out:
        summary = {"epochs": cfg["train"]["num_train_epochs"], "medians": med, "overhead": overhead}
        summary |= {"overhead_s": overhead_s, "overhead_cpu": overhead_cpu}
        summary |= {"job_overhead": job_overhead, "job_overhead_cpu": job_overhead_cpu}
        summary |= {"loop_overhead": loop_overhead, "fixed_s": fixed_s, "job_fixed_s": job_fixed_s}
        args.out.write_text(
            json.dumps({**summary, "packing_speedup": speedup, "runs": runs}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
