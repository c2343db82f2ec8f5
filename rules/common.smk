# Config validation and every input function. No lambdas inside rules.
import os
import re
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
TASKS = {exp: cfg["task"] for exp, cfg in config["experiments"].items()}


def experiments_for(*tasks):
    return [exp for exp in EXPERIMENTS if TASKS[exp] in tasks]


# Preference experiments (ORPO): politeness and truthy. Generated data, or ingested from hf:/builtin:/a file.
PREFERENCE_EXPS = experiments_for("politeness", "truthy")
GENERATED_EXPS = [e for e in experiments_for("politeness") if not config["experiments"][e]["data"].get("source")]
INGESTED_EXPS = [e for e in PREFERENCE_EXPS if e not in GENERATED_EXPS]
LIPOGRAM_EXPS = experiments_for("lipogram")
# A lipogram experiment trains several methods; each is a run with its own adapter, merge and GGUFs under
# results/<experiment>/<method>/, through the same export rules as the preference experiments.
LIPOGRAM_RUNS = {
    f"{exp}/{name}": (exp, name) for exp in LIPOGRAM_EXPS for name in config["experiments"][exp]["methods"]
}
SFT_RUNS = [r for r, (e, m) in LIPOGRAM_RUNS.items() if config["experiments"][e]["methods"][m]["method"] == "sft"]
GRPO_RUNS = [r for r in LIPOGRAM_RUNS if r not in SFT_RUNS]
RUNS = PREFERENCE_EXPS + list(LIPOGRAM_RUNS)  # everything with an adapter


def one_of(names):
    """A wildcard regex matching exactly these names (one that never matches when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def gguf_stem(run):
    """lipogram/sft -> lipogram-sft: the name a run's GGUF files carry."""
    return "-".join(LIPOGRAM_RUNS.get(run, (run,)))


wildcard_constraints:
    experiment=one_of(EXPERIMENTS + list(LIPOGRAM_RUNS)),
    stem=one_of([gguf_stem(r) for r in RUNS]),
    model=one_of(MODELS),
    quant=one_of(sorted(GGUF_VARIANTS - {"F16"})),


def parent_experiment(run):
    return run.split("/", 1)[0]


def exp_config(wildcards):
    """The experiment's settings; for a lipogram run (lipogram/sft), its experiment's."""
    return config["experiments"][parent_experiment(wildcards.experiment)]


def method_settings(wildcards):
    exp, method = LIPOGRAM_RUNS[wildcards.experiment]
    return config["experiments"][exp]["methods"][method]


def model_source_for(wildcards):
    return config["models"][wildcards.model]["source"]


def data_settings(wildcards):
    return exp_config(wildcards)["data"]


def suite_settings(wildcards):
    """The edge-case suite: the data's policy and seed, and the evaluation's size per category."""
    cfg = exp_config(wildcards)
    return {"policy": cfg["data"]["policy"], "seed": cfg["data"]["seed"],
            "per_category": cfg["evaluate"]["suite_per_category"]}


def distill_settings(wildcards):
    return exp_config(wildcards)["distill"]


def lipogram_sft_data(wildcards):
    return f"results/{parent_experiment(wildcards.experiment)}/data/sft.parquet"


def grpo_inputs(wildcards):
    """GRPO's prompts and base model, and the adapter it starts from when the method names an init."""
    exp = parent_experiment(wildcards.experiment)
    inputs = {"prompts": f"results/{exp}/data/prompts.parquet", "model": base_model_dir(wildcards)}
    init = method_settings(wildcards)["init"]
    if init:
        inputs["init_adapter"] = f"results/{exp}/{init}/adapter"
    return inputs


def train_settings(wildcards):
    return exp_config(wildcards)["train"]


def length_limits(wildcards):
    """What format_data needs from train: (rows over the limits are dropped or truncated, and counted)."""
    train = train_settings(wildcards)
    return {k: train[k] for k in ("max_length", "max_prompt_length", "overlong")}


def export_settings(wildcards):
    return exp_config(wildcards)["export"]


def merged_dtype(wildcards):
    return export_settings(wildcards)["merged_dtype"]


def base_model_dir(wildcards):
    return f"resources/models/{exp_config(wildcards)['model']}"


def base_model_source(wildcards):
    return config["models"][exp_config(wildcards)["model"]]["source"]


def gguf_path(run, variant):
    return f"results/{run}/gguf/{gguf_stem(run)}-{variant}.gguf"


def run_of_stem(wildcards):
    """The export rules name files <stem>-<variant>.gguf; the stem must be the run's own."""
    if wildcards.stem != gguf_stem(wildcards.experiment):
        raise WorkflowError(
            f"results/{wildcards.experiment}/gguf/ holds {gguf_stem(wildcards.experiment)}-*.gguf files, "
            f"not {wildcards.stem}-*: ask for {gguf_path(wildcards.experiment, 'F16')}"
        )
    return wildcards.experiment


def base_gguf(wildcards):
    """The base model as an F16 GGUF: under LoRA GGUFs, and for constrained decoding on llama.cpp."""
    return f"resources/gguf/{exp_config(wildcards)['model']}-F16.gguf"


def eval_settings(wildcards):
    """The experiment's evaluate: section minus the variant list, so adding a variant reruns nothing else."""
    return {k: v for k, v in exp_config(wildcards)["evaluate"].items() if k != "variants"}


def experiment_task(wildcards):
    return TASKS[parent_experiment(wildcards.experiment)]


def eval_hf_threads(wildcards):
    """Two threads for a politeness suite (~200 prompts); the smaller truthy and lipogram sets are bound by
    loading, where a second thread is idle (docs/benchmarks.md). Profiles' set-threads override this."""
    return 2 if experiment_task(wildcards) == "politeness" else 1


def lipogram_letter(wildcards):
    """The banned letter of a lipogram experiment (None elsewhere)."""
    return exp_config(wildcards).get("letter")


def eval_set(wildcards):
    """The held-out prompts or pairs a variant is evaluated on."""
    task = TASKS[wildcards.experiment]
    if task == "politeness":
        return f"results/{wildcards.experiment}/eval/prompts.parquet"
    if task == "truthy":
        return f"results/{wildcards.experiment}/data/raw.parquet"  # its test split, before the chat template
    return f"results/{wildcards.experiment}/data/eval_prompts.parquet"


def variant_inputs(wildcards):
    """What an evaluation variant runs: an HF folder (plus an adapter), or a GGUF (plus a LoRA GGUF)."""
    exp, variant = wildcards.experiment, wildcards.variant
    inputs = {"eval_set": eval_set(wildcards)}
    if TASKS[exp] == "lipogram":
        name, _, quant = variant.partition("-")
        run = f"{exp}/{name}"
        if quant:
            inputs["gguf"] = base_gguf(wildcards) if name == "constrained" else gguf_path(run, quant)
        else:
            inputs["model"] = base_model_dir(wildcards)
            if run in LIPOGRAM_RUNS:
                inputs["adapter"] = f"results/{run}/adapter"
        return inputs
    if variant == "merged":
        inputs["model"] = f"results/{exp}/merged"
    elif variant in ("base", "adapter"):
        inputs["model"] = base_model_dir(wildcards)
        if variant == "adapter":
            inputs["adapter"] = f"results/{exp}/adapter"
    elif variant == "lora-F16":
        inputs.update(gguf=base_gguf(wildcards), lora=gguf_path(exp, "lora-F16"))
    else:
        inputs["gguf"] = gguf_path(exp, variant)
    return inputs


def eval_csvs(wildcards):
    variants = exp_config(wildcards)["evaluate"]["variants"]
    return [f"results/{wildcards.experiment}/eval/{v}.csv" for v in variants]


def run_metrics(wildcards):
    return metrics_for(wildcards.experiment)


def metrics_for(exp):
    """Training metrics behind an experiment's curves: one run, or every method of a lipogram experiment."""
    runs = [r for r, (e, _) in LIPOGRAM_RUNS.items() if e == exp] if TASKS[exp] == "lipogram" else [exp]
    return [f"results/{run}/train/metrics.csv" for run in runs]


def experiment_report_files(exp):
    files = [
        f"results/{exp}/eval/summary.csv",
        f"results/{exp}/report/training_curves.png",
        f"results/{exp}/report/eval.png",
    ]
    variants = config["experiments"][exp]["evaluate"]["variants"]
    files += [f"results/{exp}/eval/{v}.csv" for v in variants]
    if TASKS[exp] == "truthy":
        files += [f"results/{exp}/eval/examples/{v}.csv" for v in variants]
    return files


def reproduction_inputs(wildcards=None):
    """Every experiment's summary and training metrics: what the reproduction table reads."""
    files = []
    for exp in EXPERIMENTS:
        files.append(f"results/{exp}/eval/summary.csv")
        files += metrics_for(exp)
        if TASKS[exp] == "politeness":
            files.append(f"results/{exp}/eval/{config['experiments'][exp]['evaluate']['variants'][0]}.csv")
    return files


def reproduction_settings(wildcards=None):
    """Per experiment: its task, the model's source and the settings behind our figures."""
    return {
        exp: {"task": TASKS[exp], "model_source": config["models"][cfg["model"]]["source"], "config": cfg}
        for exp, cfg in config["experiments"].items()
    }


def report_inputs(wildcards=None):
    """What the HTML page reads: each experiment's report files and the training metrics of all its runs,
    and the quant fidelity plot of every preference experiment that builds quants."""
    files = [f for exp in EXPERIMENTS for f in experiment_report_files(exp) + metrics_for(exp)]
    return files + [f"results/{exp}/report/fidelity.png" for exp in PREFERENCE_EXPS
                    if config["experiments"][exp]["export"]["quants"]]


def experiment_targets(exp):
    """What `snakemake <experiment>` builds: GGUFs, evaluation, figures and the experiment's release files."""
    cfg = config["experiments"][exp]
    if TASKS[exp] == "lipogram":
        runs = [f"{exp}/{m}" for m in cfg["export"]["methods"]]
        targets = [gguf_path(run, v) for run in runs for v in ["F16", *cfg["export"]["quants"]]]
        targets.append(f"results/{exp}/gguf/{exp}-no-{cfg['letter']}.gbnf")
    else:
        targets = [gguf_path(exp, v) for v in ["F16", "lora-F16", *cfg["export"]["quants"]]]
    return targets + experiment_report_files(exp) + release_targets(exp)


def all_targets():
    targets = [t for exp in EXPERIMENTS for t in experiment_targets(exp)]
    return targets + ["results/report.html", "results/reproduction.md"]
