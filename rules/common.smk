# Config validation and every input function. No lambdas inside rules. No task is named here: what an
# experiment needs comes from its task (rulebound/tasks/<task>/, the registry in rulebound/tasks/registry.py).
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

from rulebound.config import GGUF_VARIANTS, canonical, check_devices, validate_config
from rulebound import slurm as slurm_checks
from rulebound.errors import RuleboundError
from rulebound.tasks import paths, registry

try:
    validate_config(config, os.path.join(workflow.basedir, "schemas/config.schema.yaml"))
except RuleboundError as exc:
    raise WorkflowError(str(exc)) from None
_canonical = canonical(config)  # rule params then do not depend on the order of keys in the files
config.clear()
config.update(_canonical)
# Job processes load the same plug-in tasks (rulebound.tasks.registry reads this).
os.environ[registry.PLUGINS_ENV] = os.pathsep.join(config["task_plugins"])


def profile_resources():
    """(name, raw value) of every resource the command line and profiles set: default-resources, set-resources."""
    settings = workflow.resource_settings
    raws = [tuple(arg.split("=", 1)) for arg in getattr(settings.default_resources, "args", None) or []]
    return raws + [(name, res.raw) for per_rule in settings.overwrite_resources.values() for name, res in per_rule.items()]


# profiles/slurm-a100 reads account and partitions from the environment: unset, Slurm would get `$VAR` itself.
try:
    slurm_checks.check_variables(profile_resources())
except RuleboundError as exc:
    raise WorkflowError(str(exc)) from None


onstart:
    # GPU-only settings fail before the first job when jobs run on this very machine. onstart runs once
    # the executor is known (at parse time workflow.dryrun/local_exec are not set yet) and never in dry
    # runs, so dry runs and cluster submissions from a CPU login node still plan.
    if workflow.local_exec and not workflow.remote_exec:
        try:
            check_devices(config)
        except RuleboundError as exc:
            raise WorkflowError(str(exc)) from None
    # A partition or account Slurm refuses: one clear error before the first submission, not one per job.
    if workflow.executor_plugin is not None and workflow.executor_plugin.name == "slurm":
        try:
            slurm_checks.check_cluster(profile_resources())
        except RuleboundError as exc:
            raise WorkflowError(str(exc)) from None


EXPERIMENTS = list(config["experiments"])
MODELS = list(config["models"])
LLAMA_CPP_DIR = f"resources/llama-cpp-python-{config['llama_cpp']['version']}"
TASK = {exp: registry.get(cfg["task"]) for exp, cfg in config["experiments"].items()}
# Every training run (an adapter under results/<run>/): one per experiment, or one per lipogram method.
RUNS = {run.name: run for exp in EXPERIMENTS for run in TASK[exp].runs(exp, config["experiments"][exp])}
RUNS_BY_METHOD = {m: [r for r in RUNS if RUNS[r].method == m] for m in ("orpo", "sft", "grpo")}
EXPORTED = [r for exp in EXPERIMENTS for r in TASK[exp].exported_runs(exp, config["experiments"][exp])]


def experiments_of(task):
    """The experiments of one task: what a task's own rule file (rules/tasks/<task>.smk) constrains its rules to."""
    return [exp for exp in EXPERIMENTS if TASK[exp].name == task]


def one_of(names):
    """A wildcard regex matching exactly these names (one that never matches when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    experiment=one_of(EXPERIMENTS),
    run=one_of(RUNS),
    stem=one_of([run.stem for run in RUNS.values()]),
    model=one_of(MODELS),
    quant=one_of(sorted(GGUF_VARIANTS - {"F16"})),


# --- experiments ---------------------------------------------------------------------------------


def exp_config(wildcards):
    return config["experiments"][wildcards.experiment]


def experiment_task(wildcards):
    return TASK[wildcards.experiment].name


def data_settings(wildcards):
    return exp_config(wildcards)["data"]


def model_source_for(wildcards):
    return config["models"][wildcards.model]["source"]


def base_model_dir(wildcards):
    return paths.base_model_dir(exp_config(wildcards)["model"])


def base_model_source(wildcards):
    return config["models"][exp_config(wildcards)["model"]]["source"]


def base_gguf(wildcards):
    """The base model as an F16 GGUF: under LoRA GGUFs, and for constrained decoding on llama.cpp."""
    return paths.base_gguf(exp_config(wildcards)["model"])


INGESTED_EXPS = [e for e in EXPERIMENTS if TASK[e].ingests(config["experiments"][e])]
FORMATTED_EXPS = [e for e in EXPERIMENTS if TASK[e].formats_preferences(e, config["experiments"][e])]


def length_limits(wildcards):
    """What format_data needs from training: rows over the limits are dropped or truncated, and counted."""
    return TASK[wildcards.experiment].formatting_limits(exp_config(wildcards))


# --- runs ----------------------------------------------------------------------------------------


def run_settings(wildcards):
    return RUNS[wildcards.run].settings


def run_model(wildcards):
    return config["experiments"][RUNS[wildcards.run].experiment]["model"]


def run_base_dir(wildcards):
    return paths.base_model_dir(run_model(wildcards))


def run_base_source(wildcards):
    return config["models"][run_model(wildcards)]["source"]


def run_checkpoints(wildcards):
    """Where a run's trainer checkpoints live: under the workflow, outside the rule's outputs (Snakemake removes
    those before a retry), one folder per hash of the run's settings and inputs (rulebound.train.checkpoints)."""
    return f"checkpoints/{wildcards.run}"


def run_tracker(wildcards):
    """The experiment tracker's files (train.report_to) beside the run's metrics; not an output, so a retry
    keeps the curves of earlier attempts."""
    return f"results/{wildcards.run}/train/tracker"


def run_inputs(wildcards):
    """A training rule's inputs: the run's data, the base model and the adapter it starts from, if any."""
    run = RUNS[wildcards.run]
    inputs = {**run.data, "model": paths.base_model_dir(run_model(wildcards))}
    if run.init:
        inputs["init_adapter"] = paths.adapter_dir(run.init)
    return inputs


def merged_dtype(wildcards):
    return config["experiments"][RUNS[wildcards.run].experiment]["export"]["merged_dtype"]


def run_of_stem(wildcards):
    """The export rules name files <stem>-<variant>.gguf; the stem must be the run's own."""
    run = RUNS[wildcards.run]
    if wildcards.stem != run.stem:
        raise WorkflowError(
            f"results/{run.name}/gguf/ holds {run.stem}-*.gguf files, not {wildcards.stem}-*: ask for "
            f"{paths.gguf_path(run, 'F16')}"
        )
    return run.name


# --- evaluation ----------------------------------------------------------------------------------


def eval_settings(wildcards):
    return TASK[wildcards.experiment].eval_settings(exp_config(wildcards))


def eval_threads(wildcards):
    return TASK[wildcards.experiment].eval_threads(exp_config(wildcards))


def variant_inputs(wildcards):
    """What an evaluation variant runs: an HF folder (plus an adapter) or a GGUF (plus a LoRA GGUF), and the
    evaluation set; the task decides (rulebound.modelref.ModelRef reads them)."""
    return TASK[wildcards.experiment].variant_inputs(wildcards.experiment, exp_config(wildcards), wildcards.variant)


def variants_of(exp):
    return config["experiments"][exp]["evaluate"]["variants"]


def eval_csvs(wildcards):
    return [paths.eval_csv(wildcards.experiment, v) for v in variants_of(wildcards.experiment)]


def eval_csv_map(wildcards):
    return {v: paths.eval_csv(wildcards.experiment, v) for v in variants_of(wildcards.experiment)}


def runs_of(exp):
    return [run.name for run in TASK[exp].runs(exp, config["experiments"][exp])]


def metrics_map(exp):
    """Training metrics behind an experiment's curves, by run."""
    return {run: paths.metrics_csv(run) for run in runs_of(exp)}


def run_metrics(wildcards):
    return list(metrics_map(wildcards.experiment).values())


def run_metrics_map(wildcards):
    return metrics_map(wildcards.experiment)


# --- report, release, targets ---------------------------------------------------------------------


def quant_names_of(exp):
    return list(config["experiments"][exp]["export"]["quants"])


def release_run(exp):
    return TASK[exp].release_run(exp, config["experiments"][exp])


def gguf_variants_of(run):
    """Every GGUF of an exported run: F16, its quants and (where the task builds one) the LoRA GGUF."""
    exp = RUNS[run].experiment
    lora = ["lora-F16"] if TASK[exp].lora_gguf(config["experiments"][exp]) else []
    return ["F16", *lora, *quant_names_of(exp)]


def conformance_files(wildcards):
    """Every exported GGUF of the experiment as the conformance check loads it: the file, the GGUF llama.cpp opens
    (the base model's F16 GGUF under the LoRA GGUF), the LoRA, the file's Modelfile, and the HF model it was
    exported from (the merged folder; the base folder and the adapter for the LoRA GGUF)."""
    exp = wildcards.experiment
    files = []
    for r in TASK[exp].exported_runs(exp, config["experiments"][exp]):
        for v in gguf_variants_of(r):
            gguf, lora = paths.gguf_path(RUNS[r], v), None
            reference, adapter = paths.merged_dir(r), None
            if v == "lora-F16":
                gguf, lora = paths.base_gguf(config["experiments"][exp]["model"]), gguf
                reference, adapter = paths.base_model_dir(config["experiments"][exp]["model"]), paths.adapter_dir(r)
            files.append({"file": paths.gguf_path(RUNS[r], v), "gguf": gguf, "lora": lora,
                          "modelfile": paths.modelfile_path(RUNS[r], v), "reference": reference,
                          "reference_adapter": adapter})
    return files


def conformance_inputs(wildcards):
    files = conformance_files(wildcards)
    return {"ggufs": sorted({f[k] for f in files for k in ("gguf", "lora") if f[k]}),
            "modelfiles": [f["modelfile"] for f in files], "tokenizer": base_model_dir(wildcards),
            "references": sorted({f[k] for f in files for k in ("reference", "reference_adapter") if f[k]}),
            "eval_set": TASK[wildcards.experiment].eval_set(wildcards.experiment, exp_config(wildcards))}


CONFORMANCE_EXPS = [exp for exp in EXPERIMENTS if TASK[exp].exported_runs(exp, config["experiments"][exp])]


def report_entry(exp):
    """An experiment's part of the report mapping: its task and its files by role."""
    cfg = config["experiments"][exp]
    entry = {
        "task": TASK[exp].name,
        "summary": paths.summary_csv(exp),
        "metrics": metrics_map(exp),
        "evals": {v: paths.eval_csv(exp, v) for v in variants_of(exp)},
        "figures": {name: paths.figure(exp, name) for name in ("training_curves", "eval")},
        **TASK[exp].report_files(exp, cfg),
    }
    if exp in CONFORMANCE_EXPS:
        entry["conformance"] = f"results/{exp}/eval/conformance.csv"
    if release_run(exp) and quant_names_of(exp):
        entry["figures"]["fidelity"] = paths.figure(exp, "fidelity")
    return entry


def report_mapping(wildcards=None):
    return {exp: report_entry(exp) for exp in EXPERIMENTS}


def flat_files(entry):
    """Every path in a report entry (the DAG needs them as a flat list)."""
    out = []
    for role, value in entry.items():
        if role == "task":
            continue
        out += list(value.values()) if isinstance(value, dict) else list(value) if isinstance(value, list) else [value]
    return out


def report_inputs(wildcards=None):
    return [f for exp in EXPERIMENTS for f in flat_files(report_entry(exp))]


def experiment_report_files(exp):
    """What the report and `snakemake <experiment>` need of the evaluation: summary, figures, eval CSVs."""
    entry = report_entry(exp)
    entry["figures"].pop("fidelity", None)  # a release file, below
    return flat_files(entry)


def release_targets(exp):
    """Modelfiles next to every exported GGUF; for the task's release run, quant fidelity and a hub folder."""
    cfg = config["experiments"][exp]
    runs = TASK[exp].exported_runs(exp, cfg)
    targets = [paths.modelfile_path(RUNS[r], v) for r in runs for v in gguf_variants_of(r)]
    if release_run(exp):
        if quant_names_of(exp):
            targets += [f"results/{exp}/eval/fidelity.csv", paths.figure(exp, "fidelity")]
        targets.append(f"results/{exp}/publish")
    return targets


def reproduction_inputs(wildcards=None):
    """Every file the reproduction table reads, as each task declares it."""
    return [f for exp in EXPERIMENTS for f in TASK[exp].reproduction_inputs(exp, config["experiments"][exp])]


def reproduction_settings(wildcards=None):
    """Per experiment: its task, the model's source and the settings behind our figures."""
    return {
        exp: {"task": TASK[exp].name, "model_source": config["models"][cfg["model"]]["source"], "config": cfg}
        for exp, cfg in config["experiments"].items()
    }


def experiment_targets(exp):
    """What `snakemake <experiment>` builds: GGUFs, evaluation, figures and the experiment's release files."""
    cfg = config["experiments"][exp]
    ggufs = [paths.gguf_path(RUNS[r], v) for r in TASK[exp].exported_runs(exp, cfg) for v in gguf_variants_of(r)]
    return ggufs + TASK[exp].extra_targets(exp, cfg) + experiment_report_files(exp) + release_targets(exp)


def all_targets():
    targets = [t for exp in EXPERIMENTS for t in experiment_targets(exp)]
    return targets + ["results/report.html", "results/reproduction.md"]
