"""Rule merge_preference: a dpo/kto adapter merged with `llamafactory-cli export` into the model it was
trained on."""

from pathlib import Path

from conch.llamafactory import lf
from conch.model.hub import base_model_path
from conch.preference.stages import merge_base


def run(input, output, params, log, wildcards):
    base = merge_base(
        wildcards.method,
        params.start_from,
        sft_model=input.sft_model,
        base_model=base_model_path(input.base),
    )
    args = lf.export_args(
        base_model=base,
        adapter=str(Path(input.adapter).parent),
        template=params.template,
        export_dir=output.model,
        train=params.train,
    )
    lf.write_yaml(args, output.export_yaml)
    open(log, "w").close()
    lf.run("export", output.export_yaml, log)
