"""The plan of one Snakemake run: the config checked, defaults filled in, experiments expanded, branches
decided, and each stage's settings as a typed object, with the paths where the stages' outputs live.

Built once, in rules/common.smk, and read by the rules: a rule only wires the plan's values into its
params and inputs. How training keys are layered is in conch/workflow/layering.py, nowhere else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from conch.errors import ConfigError
from conch.evaluation.selection import selection_mode
from conch.rag.paths import resolve
from conch.server.settings import with_serve_settings
from conch.workflow import layering, layout
from conch.workflow.config import check
from conch.workflow.experiments import all_experiments


@dataclass(frozen=True)
class Sft:
    """One experiment's fine-tuning: `train` is the dict of LLaMA-Factory keys its rules pass on."""

    experiment: str
    overrides: dict  # the named experiment's keys or the grid point, nulls kept
    layers: tuple  # the blocks `train` was layered from (layering.sft_layers)
    train: dict

    @property
    def finetuning_type(self) -> str:
        return self.train.get("finetuning_type", "lora")  # LLaMA-Factory's default when unset

    @property
    def lora(self) -> bool:
        return self.finetuning_type == "lora"


@dataclass(frozen=True)
class PrefStage:
    """A LLaMA-Factory preference stage's block: `preference.train` (dpo and kto) or its reward_model's."""

    block: dict  # as written, nulls kept: a null removes the experiment's key for this stage

    def train(self, sft: Sft) -> dict:
        return layering.layer(*layering.stage_layers(sft.layers, self.block))


@dataclass(frozen=True)
class Ppo:
    overrides: dict  # preference.ppo.train as written; PPOConfig gets `config`
    reward_model: str | None  # `train`, or a reward model directory
    prompts: str | None  # preference or sft
    max_prompts: int | None

    @property
    def config(self) -> dict:
        return layering.ppo_config(self.overrides)

    @property
    def trains_reward_model(self) -> bool:
        return self.reward_model == "train"


@dataclass(frozen=True)
class Preference:
    methods: tuple[str, ...]
    serve: str  # the method whose model `serve` serves, or sft
    dataset: str  # the prepared pairs' dataset name
    raw: tuple[str, ...]
    data: dict  # prepare_preference's settings, raw aside
    start_from: str
    pairs: str  # given or on_policy
    dpo: PrefStage  # dpo and kto
    reward_model: PrefStage
    ppo: Ppo
    eval: dict

    @property
    def dir(self) -> str:
        return f"results/data/{self.dataset}"

    @property
    def on_policy(self) -> bool:
        return self.pairs == "on_policy"

    @property
    def on_policy_dataset(self) -> str:
        return f"{self.dataset}_on_policy"

    @property
    def on_policy_dir(self) -> str:
        """A pattern: on-policy pairs are built per experiment, from its SFT model's own answers."""
        return f"results/data/{self.on_policy_dataset}/{{experiment}}"

    @property
    def pairs_dataset(self) -> str:
        """The pairs dpo/kto and the reward model train on: the given ones, or the on-policy ones."""
        return self.on_policy_dataset if self.on_policy else self.dataset

    @property
    def pairs_dir(self) -> str:
        return self.on_policy_dir if self.on_policy else self.dir

    def pairs_file(self, name: str, experiment: str = "{experiment}") -> str:
        return f"{self.pairs_dir}/{name}".replace("{experiment}", experiment)

    @property
    def stages(self) -> frozenset[str]:
        """Which rules of the branch run: dpo/kto share train_preference, rm only when PPO trains its own."""
        wanted = {m for m in self.methods if m in ("dpo", "kto", "ppo")}
        if "ppo" in wanted and self.ppo.trains_reward_model:
            wanted.add("rm")
        return frozenset(wanted)


@dataclass(frozen=True)
class BaseModel:
    source: str
    settings: dict  # the validated `base_model` block

    @property
    def manifest(self) -> str:
        """The manifest every later stage takes: that of the source the config names."""
        return self.manifest_of(self.source)

    @staticmethod
    def manifest_of(source: str) -> str:
        return layout.BASE_MANIFEST.format(source=source)

    @property
    def path(self) -> str:
        return self.settings.get("path", "")


@dataclass(frozen=True)
class Branches:
    rag: bool
    preference: bool
    gguf: bool


@dataclass(frozen=True)
class Plan:
    config: dict  # validated, the schema's defaults filled in, training nulls dropped
    dataset: str
    sfts: dict[str, Sft]  # by experiment, named ones first, then the grid's
    branches: Branches
    base_model: BaseModel
    preference: Preference
    eval: dict  # `eval`, with retention resolved as rag's paths are
    rag: dict  # `rag`, with docs and questions resolved against the workflow's directory
    export: dict
    merge: dict
    selection: dict  # metric and mode (max/min)
    serve: dict  # the validated `serve` block: conch.server.settings.ServeSettings' fields and `experiment`
    template: str

    # ---- stages' settings -------------------------------------------------------------------------------
    @property
    def experiments(self) -> list[str]:
        return list(self.sfts)

    def sft(self, experiment: str) -> Sft:
        return self.sfts[experiment]

    def pref_train(self, experiment: str) -> dict:
        """dpo/kto's LLaMA-Factory keys over the experiment's."""
        return self.preference.dpo.train(self.sft(experiment))

    def rm_train(self, experiment: str) -> dict:
        return self.preference.reward_model.train(self.sft(experiment))

    def chat_format(self, experiment: str) -> dict:
        """What the served model renders tools and parses reasoning with: the template it was trained with,
        and that training's default_system and tool_format (conch.server.settings.ModelEntry's keys)."""
        train = self.sft(experiment).train
        return {"template": self.template, **{k: train.get(k) for k in ("default_system", "tool_format")}}

    def ppo_lora(self, experiment: str) -> dict:
        """PPO's policy adapter: the LoRA keys dpo/kto would train with."""
        return layering.ppo_lora(self.pref_train(experiment))

    # ---- where outputs live -----------------------------------------------------------------------------
    @property
    def base_manifest(self) -> str:
        return self.base_model.manifest

    def training_output(self, experiment: str, name: str) -> str:
        """Output `name` (adapter, model, train_yaml, trainer_log, loss_plot, benchmark) of its training."""
        kind = "lora" if self.sft(experiment).lora else "model"
        return layout.TRAINING[kind][name].format(experiment=experiment)

    def tuned_model(self, experiment: str) -> str:
        """The fine-tuned model evaluation, comparison, serving and the preference branch start from: the
        merged LoRA model, or the full/freeze-trained one."""
        if self.sft(experiment).lora:
            return layout.MERGED_MODEL.format(experiment=experiment)
        return self.training_output(experiment, "model")

    def trained_weights(self, experiment: str) -> str:
        """What training produced: the LoRA adapter file, or the full/freeze-trained model directory."""
        return self.training_output(experiment, "adapter" if self.sft(experiment).lora else "model")

    def merge_check(self, experiment: str) -> list[str]:
        """The merge check a LoRA experiment's model must pass; full and freeze have no merge to check."""
        return [layout.MERGE_CHECK.format(experiment=experiment)] if self.sft(experiment).lora else []

    def sft_adapter(self, experiment: str) -> str | list:
        """The SFT LoRA adapter, where the experiment has one (preference.start_from: adapter needs it)."""
        return self.training_output(experiment, "adapter") if self.sft(experiment).lora else []

    def aligned_model(self, method: str, experiment: str) -> str:
        return layout.ALIGNED_MODEL.format(method=method, experiment=experiment)

    def served_model(self, experiment: str) -> str:
        """The model `serve` serves: the aligned one with the preference branch on, else the SFT model."""
        if self.preference.serve == "sft":
            return self.tuned_model(experiment)
        return self.aligned_model(self.preference.serve, experiment)

    def reward_model(self, experiment: str) -> str | list:
        """The reward model PPO scores with: the one stage rm trains here, or the configured directory;
        none without PPO."""
        ppo = self.preference.ppo
        if "ppo" not in self.preference.methods:
            return []
        return (
            layout.REWARD_MODEL.format(experiment=experiment) if ppo.trains_reward_model else ppo.reward_model
        )


def _preference(config: dict, written: dict) -> Preference:
    pref, ppo = config["preference"], config["preference"]["ppo"]
    methods = tuple(pref["methods"])
    blocks = layering.stage_blocks(written)
    return Preference(
        methods=methods,
        serve=pref.get("serve") or (methods[0] if methods else "sft"),
        dataset=pref.get("dataset") or f"{config['dataset']}_pref",
        raw=tuple(pref["data"].get("raw") or ()),
        data={k: v for k, v in pref["data"].items() if k != "raw"},
        start_from=pref["start_from"],
        pairs=pref["pairs"],
        dpo=PrefStage(blocks.get("dpo", {})),
        reward_model=PrefStage(blocks.get("rm", {})),
        ppo=Ppo(ppo["train"], ppo.get("reward_model"), ppo.get("prompts"), ppo.get("max_prompts")),
        eval=pref["eval"],
    )


def load_schema(path: str | Path) -> dict:
    """config/schema.yaml as the workflow checks configs against it: with the `serve` settings' part, which
    conch.server.settings.ServeSettings defines (their one home, shared with the server's CLI)."""
    return with_serve_settings(yaml.safe_load(Path(path).read_text(encoding="utf-8")))


def build(config: dict, schema: dict, basedir: str = ".") -> Plan:
    """The plan for `config` (as Snakemake merged it from the config files), checked against `schema`.

    Raises conch.errors.ConfigError listing every problem. `config` itself is not changed."""
    check(config, schema)
    try:
        validated = layering.fill_defaults(layering.without_train_nulls(config), schema)
    except jsonschema.ValidationError as err:  # a default the schema itself gets wrong
        raise ConfigError(f"config: {err.message}") from None
    sfts = {}
    for name, overrides in all_experiments(validated).items():
        layers = layering.sft_layers(validated, overrides)
        sfts[name] = Sft(name, overrides, layers, layering.layer(*layers))
    rag = dict(validated["rag"])
    rag.update(docs=resolve(rag["docs"], basedir), questions=resolve(rag["questions"], basedir))
    evaluation = dict(validated["eval"])
    if evaluation.get("retention"):
        evaluation["retention"] = resolve(evaluation["retention"], basedir)
    metric = validated["selection"]["metric"]
    return Plan(
        config=validated,
        dataset=validated["dataset"],
        sfts=sfts,
        branches=Branches(
            rag=validated["rag"]["enabled"],
            preference=bool(validated["preference"]["methods"]),
            gguf=bool(validated["export"]["gguf"]),
        ),
        base_model=BaseModel(validated["base_model"]["source"], validated["base_model"]),
        preference=_preference(validated, config),
        eval=evaluation,
        rag=rag,
        export=validated["export"],
        merge=validated["merge"],
        selection={"metric": metric, "mode": selection_mode(metric, validated["selection"].get("mode"))},
        serve=validated["serve"],
        template=validated["template"],
    )


def branches(plan: Plan) -> dict[str, bool]:
    return dataclasses.asdict(plan.branches)
