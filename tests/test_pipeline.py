"""End to end: Snakemake on the smoke config in a temp dir, every artifact checked, then the rebuild rules."""

from __future__ import annotations

import copy
import struct
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from smoke.pipeline import EXP, REPO, SMOKE, planned_rules

VARIANTS = ["base", "adapter", "F16", "Q8_0", "Q4_K_M"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(smoke_run) -> Path:
    return smoke_run


def test_raw_and_split_parquet_schema(built):
    data = built / "results" / EXP / "data"
    raw = pd.read_parquet(data / "raw.parquet")
    assert {"prompt", "chosen", "rejected", "has_please", "category"} <= set(raw.columns)
    assert raw["prompt"].map(type).eq(str).all()
    train, test = pd.read_parquet(data / "train.parquet"), pd.read_parquet(data / "test.parquet")
    for split in (train, test):
        assert {"prompt", "chosen", "rejected", "user", "has_please"} <= set(split.columns)
        assert split["prompt"].str.endswith("<|im_start|>assistant\n").all()
        assert split["chosen"].str.endswith("<|im_end|>").all()
    assert set(train["user"]).isdisjoint(test["user"])
    card = (data / "card.md").read_text()
    assert f"{len(train)} training and {len(test)} test preference pairs" in card


def test_adapter_loads_with_peft(built):
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM

    adapter = built / "results" / EXP / "adapter"
    for name in ("adapter_config.json", "adapter_model.safetensors", "README.md"):
        assert (adapter / name).is_file(), name
    card = (adapter / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert header["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert header["library_name"] == "peft" and "orpo" in header["tags"]
    cfg = PeftConfig.from_pretrained(adapter)
    assert cfg.r == 16 and set(cfg.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                       "up_proj", "down_proj"}
    base = AutoModelForCausalLM.from_pretrained(built / "resources/models/smollm2-135m-instruct")
    model = PeftModel.from_pretrained(base, adapter)
    assert any("lora_A" in n for n, _ in model.named_parameters())


def test_metrics_csv_has_every_step_and_trl_keys(built):
    metrics = pd.read_csv(built / "results" / EXP / "train" / "metrics.csv")
    assert list(metrics["step"]) == [1, 2]
    for key in ("loss", "nll_loss", "log_odds_ratio", "rewards/accuracies", "rewards/margins", "logps/chosen",
                "logps/rejected", "learning_rate", "grad_norm"):
        assert key in metrics.columns and metrics[key].notna().all(), key


def test_merged_model_is_16_bit_with_template(built):
    merged = built / "results" / EXP / "merged"
    config = yaml.safe_load((merged / "config.json").read_text())
    assert config["dtype"] in ("float16", "bfloat16")
    assert (merged / "chat_template.jinja").is_file() or "chat_template" in (merged / "tokenizer_config.json").read_text()


@pytest.mark.parametrize("variant", ["F16", "Q8_0", "Q4_K_M"])
def test_every_gguf_loads_with_a_chat_template(built, variant):
    path = built / "results" / EXP / "gguf" / f"{EXP}-{variant}.gguf"
    assert path.read_bytes()[:4] == b"GGUF"
    code = (
        "import sys; from rulebound.generate import open_gguf; m = open_gguf(sys.argv[1], n_ctx=256); "
        "assert 'tokenizer.chat_template' in m.metadata; "
        "out = m.create_chat_completion(messages=[{'role': 'user', 'content': 'Hi'}], max_tokens=4, temperature=0); "
        "print(out['choices'][0]['message']['content'] is not None)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "True", proc.stderr[-2000:]


@pytest.mark.parametrize("variant", VARIANTS)
def test_eval_csv_rows(built, variant):
    csv = pd.read_csv(built / "results" / EXP / "eval" / f"{variant}.csv")
    assert len(csv) == 6  # max_prompts in the smoke config, drawn from the held-out split and the edge-case suite
    assert {"prompt_id", "user", "response", "refused", "expected_refusal", "correct"} <= set(csv.columns)
    assert (csv["expected_refusal"] == ~csv["has_please"]).all()
    assert (csv["correct"] == (csv["refused"] == csv["expected_refusal"])).all()
    summary = pd.read_csv(built / "results" / EXP / "eval" / "summary.csv")
    assert variant in set(summary["variant"])


def test_report_pngs_and_html(built):
    for name in ("training_curves.png", "eval.png"):
        png = (built / "results" / EXP / "report" / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", png[16:24])
        assert width > 200 and height > 200 and len(png) > 10_000
    html = (built / "results" / "report.html").read_text()
    assert "data:image/png;base64," in html and EXP in html
    assert 'alt="fidelity"' in html  # the quant fidelity plot is on the page, not only in snakemake --report


def test_release_artifacts(built):
    gguf = built / "results" / EXP / "gguf"
    for variant in ("F16", "lora-F16", "Q8_0", "Q4_K_M"):
        modelfile = (gguf / f"{EXP}-{variant}.Modelfile").read_text()
        assert "\nFROM " in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert "ADAPTER" in (gguf / f"{EXP}-lora-F16.Modelfile").read_text()
    fidelity = pd.read_csv(built / "results" / EXP / "eval" / "fidelity.csv")
    assert set(fidelity["variant"]) >= {"Q8_0", "Q4_K_M"}
    published = {p.name for p in (built / "results" / EXP / "publish").iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= published


def test_benchmarks_and_logs_are_written(built):
    assert (built / "benchmarks" / "train_orpo" / f"{EXP}.tsv").is_file()
    assert (built / "logs" / "train_orpo" / f"{EXP}.log").stat().st_size > 0


def test_complete_run_plans_nothing(built):
    assert planned_rules(built) == set()


def _variant_config(tmp_path: Path, section: str, key: str, value) -> Path:
    smoke = yaml.safe_load(SMOKE.read_text())
    changed = copy.deepcopy(smoke)
    changed["experiments"][EXP][section][key] = value
    path = tmp_path / f"changed-{section}-{key}.yaml"
    path.write_text(yaml.safe_dump(changed))  # sorted keys: key order alone must not count as a change
    return path


def test_eval_setting_reruns_only_evaluation_and_report(built, tmp_path):
    planned = planned_rules(built, configfile=_variant_config(tmp_path, "evaluate", "max_new_tokens", 13))
    # publish_folder carries the eval table in its model card; check_conformance decodes with the eval settings
    assert planned == {"evaluate_hf", "evaluate_gguf", "summarize_eval", "plot_report", "render_report",
                       "publish_folder", "reproduce", "check_conformance"}


def test_train_setting_reruns_training_and_downstream_not_data(built, tmp_path):
    planned = planned_rules(built, configfile=_variant_config(tmp_path, "train", "learning_rate", 2.0e-4))
    assert {"train_orpo", "merge_adapter", "convert_gguf", "quantize_gguf", "evaluate_gguf", "render_report"} <= planned
    assert not planned & {"prepare_model", "build_prompts", "distill_answers", "build_pairs", "format_data"}
    # the other experiments are untouched
    assert not planned & {"train_sft", "train_grpo", "ingest_pairs", "build_sft_data"}


# --- truthy and lipogram: the same stages, other tasks --------------------------------------------------


def test_truthy_ingests_the_shipped_pairs_and_scores_preferences(built):
    root = built / "results" / "truthy"
    raw = pd.read_parquet(root / "data" / "raw.parquet")
    assert {"system", "prompt", "chosen", "rejected", "split", "category"} <= set(raw.columns)
    assert len(raw) >= 150 and set(raw["split"]) == {"train", "test"}
    train = pd.read_parquet(root / "data" / "train.parquet")
    assert train["prompt"].str.startswith("<|im_start|>system\n").any()  # the system message is templated
    for variant in ("base", "adapter", "Q4_K_M"):
        scores = pd.read_csv(root / "eval" / f"{variant}.csv")
        assert len(scores) == 4  # max_pairs
        assert (scores["correct"] == (scores["logp_chosen"] > scores["logp_rejected"])).all()
        examples = pd.read_csv(root / "eval" / "examples" / f"{variant}.csv")
        assert len(examples) == 2 and examples["response"].notna().all()
    summary = pd.read_csv(root / "eval" / "summary.csv")
    assert {"base", "adapter", "Q4_K_M"} <= set(summary["variant"])
    assert (root / "gguf" / "truthy-Q4_K_M.gguf").is_file() and (root / "publish").is_dir()


def test_lipogram_methods_train_export_and_evaluate(built):
    root = built / "results" / "lipogram"
    sft = pd.read_parquet(root / "data" / "sft.parquet")
    assert not sft["completion"].str.contains("[eE]").any()
    assert "constrained decoding" in (root / "data" / "card.md").read_text()
    for method in ("sft", "grpo", "grpo_length", "grpo_curriculum"):
        assert (root / method / "adapter" / "adapter_model.safetensors").is_file(), method
    grpo = pd.read_csv(root / "grpo_curriculum" / "train" / "metrics.csv")
    for column in ("reward", "rewards/no_e/mean", "rewards/short_penalty/mean", "rewards/length_curriculum/mean",
                   "rewards/on_topic/mean"):
        assert column in grpo.columns and grpo[column].notna().all(), column
    assert (root / "grpo_curriculum" / "gguf" / "lipogram-grpo_curriculum-Q4_K_M.gguf").is_file()
    constrained = pd.read_csv(root / "eval" / "constrained.csv", keep_default_na=False)
    assert not constrained["response"].str.contains("[eE]").any()  # the ban holds on HF
    on_gguf = pd.read_csv(root / "eval" / "constrained-F16.csv", keep_default_na=False)
    assert not on_gguf["response"].str.contains("[eE]").any()  # and through llama.cpp
    assert (root / "gguf" / "lipogram-no-e.gbnf").read_text().splitlines()[-1] == "root ::= [^eE]*"
    summary = pd.read_csv(root / "eval" / "summary.csv")
    assert list(summary["variant"]) == ["base", "prompt", "constrained", "constrained-F16", "sft", "grpo",
                                        "grpo_length", "grpo_curriculum", "grpo_curriculum-Q4_K_M"]
    assert summary.loc[summary["variant"] == "constrained", "e_free_rate"].item() == 1.0


def test_reproduction_sets_every_seed_beside_ours(built):
    table = pd.read_csv(built / "results" / "reproduction.csv")
    assert set(table["seed"].astype(str).str.zfill(3)) == {"000", "003", "004"}
    assert table["comparable"].str.startswith("no").all()  # the smoke run is not the seeds' runs
    text = (built / "results" / "reproduction.md").read_text()
    assert "247" in text and "rewards/accuracies" in text and "grpo_curriculum" in text


def test_one_experiment_alone_plans_only_its_jobs(built, tmp_path):
    work = tmp_path / "alone"
    work.mkdir()
    (work / "config.yaml").write_text((REPO / "config.yaml").read_text())
    planned = planned_rules(work, "truthy")
    assert {"ingest_pairs", "train_orpo", "evaluate_hf"} <= planned
    assert not planned & {"build_prompts", "train_sft", "train_grpo", "build_lipogram_prompts"}
