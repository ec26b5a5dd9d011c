"""How a workflow script runs its job: `run_job(run, snakemake)`, the whole of every script in
workflow_scripts/.

Each `run()` lives beside the code of its stage and names, as its parameters, the parts of the Snakemake
job it reads (`input`, `output`, `params`, `log`, ...); anything with those attributes stands in for
Snakemake in a test. A `JobFailed` it raises ends the job with that message on stderr and in the log and
exit status 1, with no traceback: the message says what to fix. Any other exception is a bug and keeps its
traceback.

Kept free of heavy imports: every job pays for what this module imports before its own work starts.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable

from conch.errors import JobFailed

# The parts of a Snakemake `script:` job a run() may ask for, by parameter name.
PARTS: dict[str, Callable] = {
    "input": lambda job: job.input,
    "output": lambda job: job.output,
    "params": lambda job: job.params,
    "log": lambda job: job.log[0],  # every rule that runs a script has exactly one log
    "wildcards": lambda job: job.wildcards,
    "threads": lambda job: job.threads,
    "resources": lambda job: job.resources,
    "config": lambda job: job.config,
    "rule": lambda job: job.rule,
    "scriptdir": lambda job: job.scriptdir,
}


def run_job(run: Callable, snakemake) -> None:
    """Call `run` with the parts of `snakemake` its parameters name; a JobFailed becomes exit status 1."""
    names = inspect.signature(run).parameters
    unknown = sorted(set(names) - set(PARTS))
    if unknown:
        raise TypeError(f"{run.__module__}.run asks for {unknown}; a job has {sorted(PARTS)}")
    try:
        run(**{name: PARTS[name](snakemake) for name in names})
    except JobFailed as failed:
        with open(snakemake.log[0], "a", encoding="utf-8") as log:
            log.write(f"{failed}\n")
        print(failed, file=sys.stderr, flush=True)
        raise SystemExit(1) from None
