# finetuning_type is each experiment's own choice (docs/finetuning.md), and these input functions follow it:
# lora trains with train_adapter and merges with merge_adapter; full and freeze train with train_model, whose
# model takes the merged model's place. Called when the DAG is built, once rules/train.smk defined them all.


def finetuning_type(experiment):
    # LLaMA-Factory's default when unset
    return train_config(experiment).get("finetuning_type", "lora")


def training_rule(experiment):
    return (
        rules.train_adapter
        if finetuning_type(experiment) == "lora"
        else rules.train_model
    )


def trained(name):
    """Input function: output `name` (train_yaml, trainer_log, loss_plot) of the experiment's training."""
    return lambda wc: training_output(wc.experiment, name)


def training_output(experiment, name):
    return expand(
        getattr(training_rule(experiment).output, name), experiment=experiment
    )[0]


def training_benchmark(experiment):
    """The training job's benchmark file: its wall time (s) and peak memory (max_rss, MB)."""
    return expand(training_rule(experiment).benchmark, experiment=experiment)[0]


def tuned_model(experiment):
    """The fine-tuned model evaluation, comparison, serving and the preference branch start from."""
    if finetuning_type(experiment) == "lora":
        return expand(rules.merge_adapter.output.model, experiment=experiment)[0]
    return expand(rules.train_model.output.model, experiment=experiment)[0]


def trained_weights(experiment):
    """What training produced: the LoRA adapter file, or the full/freeze-trained model directory."""
    if finetuning_type(experiment) == "lora":
        return training_output(experiment, "adapter")
    return tuned_model(experiment)


def merge_check(experiment):
    """The merge check a LoRA experiment's model must pass; full and freeze have no merge to check."""
    if finetuning_type(experiment) == "lora":
        return expand(rules.merge_adapter.output.check, experiment=experiment)
    return []
