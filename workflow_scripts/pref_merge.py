"""Merge a dpo/kto adapter with `llamafactory-cli export` into the model it was trained on."""

from pathlib import Path

from conch.model.hub import base_model_path
from conch.preference.stages import merge_base
from conch.training import lf

p = snakemake.params
base = merge_base(
    snakemake.wildcards.method,
    p.start_from,
    sft_model=snakemake.input.sft_model,
    base_model=base_model_path(snakemake.input.base),
)
args = lf.export_args(
    base_model=base,
    adapter=str(Path(snakemake.input.adapter).parent),
    template=p.template,
    export_dir=snakemake.output.model,
    train=p.train,
)
lf.write_yaml(args, snakemake.output.export_yaml)
open(snakemake.log[0], "w").close()
lf.run("export", snakemake.output.export_yaml, snakemake.log[0])
