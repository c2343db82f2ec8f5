# Config validation and every input function. No lambdas inside rules.
import os
import sys

# The rulebound package sits next to the Snakefile: importable here and in every script job,
# also inside --sdm conda environments, without installing it.
sys.path.insert(0, workflow.basedir)
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (workflow.basedir, os.environ.get("PYTHONPATH")) if p)
)
# OpenMP workers that spin while waiting slow torch and llama.cpp 5-10x when jobs share cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from rulebound.config import GGUF_VARIANTS, HF_VARIANTS, canonical, check_devices, validate_config
from rulebound.errors import RuleboundError

try:
    validate_config(config, os.path.join(workflow.basedir, "schemas/config.schema.yaml"))
except RuleboundError as exc:
    raise WorkflowError(str(exc)) from None
_canonical = canonical(config)  # rule params then do not depend on the order of keys in the files
config.clear()
config.update(_canonical)


onstart:
    # GPU-only settings fail before the first job when jobs run on this very machine. onstart runs once
    # the executor is known (at parse time workflow.dryrun/local_exec are not set yet) and never in dry
    # runs, so dry runs and cluster submissions from a CPU login node still plan.
    if workflow.local_exec and not workflow.remote_exec:
        try:
            check_devices(config)
        except RuleboundError as exc:
            raise WorkflowError(str(exc)) from None


EXPERIMENTS = list(config["experiments"])
MODELS = list(config["models"])
LLAMA_CPP_DIR = f"resources/llama-cpp-python-{config['llama_cpp']['version']}"


wildcard_constraints:
    experiment="|".join(EXPERIMENTS),
    model="|".join(MODELS),
    quant="|".join(sorted(GGUF_VARIANTS - {"F16"})),


def exp_config(wildcards):
    return config["experiments"][wildcards.experiment]


def model_source_for(wildcards):
    return config["models"][wildcards.model]["source"]


def data_settings(wildcards):
    return exp_config(wildcards)["data"]


def distill_settings(wildcards):
    return exp_config(wildcards)["distill"]


def train_settings(wildcards):
    return exp_config(wildcards)["train"]


def train_max_length(wildcards):
    return train_settings(wildcards)["max_length"]


def train_overlong(wildcards):
    return train_settings(wildcards)["overlong"]


def export_settings(wildcards):
    return exp_config(wildcards)["export"]


def merged_dtype(wildcards):
    return export_settings(wildcards)["merged_dtype"]


def eval_settings(wildcards):
    """Only what changes the generations, so unrelated edits do not rerun evaluation."""
    cfg = exp_config(wildcards)["evaluate"]
    return {k: cfg[k] for k in ("max_new_tokens", "batch_size", "max_prompts", "n_ctx")}


def base_model_dir(wildcards):
    return f"resources/models/{exp_config(wildcards)['model']}"


def base_model_source(wildcards):
    return config["models"][exp_config(wildcards)["model"]]["source"]


def gguf_path(experiment, variant):
    return f"results/{experiment}/gguf/{experiment}-{variant}.gguf"


def gguf_for_variant(wildcards):
    return gguf_path(wildcards.experiment, wildcards.variant)


def eval_csvs(wildcards):
    variants = exp_config(wildcards)["evaluate"]["variants"]
    return [f"results/{wildcards.experiment}/eval/{v}.csv" for v in variants]


def hf_eval_inputs(wildcards):
    """The base model for every HF variant, plus the adapter or merged folder it evaluates."""
    inputs = {"test": f"results/{wildcards.experiment}/data/test.parquet"}
    if wildcards.variant == "merged":
        inputs["model"] = f"results/{wildcards.experiment}/merged"
    else:
        inputs["model"] = base_model_dir(wildcards)
    if wildcards.variant == "adapter":
        inputs["adapter"] = f"results/{wildcards.experiment}/adapter"
    return inputs


def report_inputs(wildcards=None):
    files = []
    for exp in EXPERIMENTS:
        files += [
            f"results/{exp}/eval/summary.csv",
            f"results/{exp}/train/metrics.csv",
            f"results/{exp}/report/training_curves.png",
            f"results/{exp}/report/eval.png",
        ]
        files += [f"results/{exp}/eval/{v}.csv" for v in config["experiments"][exp]["evaluate"]["variants"]]
    return files


def experiment_targets(exp):
    cfg = config["experiments"][exp]
    targets = [gguf_path(exp, v) for v in ["F16", "lora-F16", *cfg["export"]["quants"]]]
    targets += [f"results/{exp}/eval/summary.csv", f"results/{exp}/report/training_curves.png"]
    return targets


def all_targets():
    targets = [t for exp in EXPERIMENTS for t in experiment_targets(exp)]
    return targets + release_targets() + ["results/report.html"]
