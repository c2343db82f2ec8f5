"""Figures are real PNGs, the readings carry our own numbers, the HTML page is self-contained and escaped."""

from __future__ import annotations

import json
import math
import runpy
import struct
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from rulebound.io import write_csv
from rulebound.report.figures import plot_reward_curves, plot_training_curves
from rulebound.report.html import render_html
from rulebound.tasks.lipogram.report import plot_lipogram_eval
from rulebound.tasks.politeness.evaluate import score_politeness, summarize_frame
from rulebound.tasks.politeness.report import RAINBOW, plot_eval_heatmap
from rulebound.tasks.politeness.report import SEED_READINGS as POLITENESS_READINGS
from rulebound.tasks.politeness.rule import REFUSAL
from rulebound.tasks.truthy.report import SEED_READINGS as TRUTHY_READINGS
from rulebound.tasks.truthy.report import plot_preference_eval

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ORPO_PANELS = ["loss", "preference accuracy", "reward margin", "log-probabilities", "learning rate", "gradient norm"]
LIPOGRAM_VARIANTS = ["base", "sft", "grpo", "grpo_curriculum-Q4_K_M"]
TRUTHY_VARIANTS = ["base", "adapter", "Q4_K_M"]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def panels_of(readings: list[str]) -> list[str]:
    return [r.split(":")[0] for r in readings]


def metrics_frame(steps: int = 12) -> pd.DataFrame:
    rows = []
    for s in range(1, steps + 1):
        rows.append({"step": s, "epoch": s / steps, "loss": 3 / s, "nll_loss": 2.5 / s, "log_odds_ratio": -0.5 / s,
                     "rewards/chosen": -0.1, "rewards/rejected": -0.1 - 0.02 * s, "rewards/accuracies": min(1, s / 8),
                     "rewards/margins": 0.02 * s, "logps/chosen": -1 - 1 / s, "logps/rejected": -1 - 0.2 * s,
                     "logits/chosen": 1.0, "logits/rejected": 1.2, "learning_rate": 5e-4 * (1 - s / steps),
                     "grad_norm": 1 / math.sqrt(s)})
    return pd.DataFrame(rows)


def grpo_metrics(components: list[str], steps: int = 8) -> pd.DataFrame:
    rows = []
    for s in range(1, steps + 1):
        row = {"step": s, "loss": 0.01 * s, "learning_rate": 1e-3, "reward": 0.1 * s, "reward_std": 0.2,
               "completions/mean_length": 24 - s, "completions/clipped_ratio": 0.5, "kl": 0.001 * s,
               "progress": s / steps}
        row.update({f"rewards/{c}/mean": 0.05 * s for c in components})
        rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture
def experiment(tmp_path) -> Path:
    """results/politeness: split and suite rows (rainbow examples, a multi-turn one), a summary, training metrics."""
    root = tmp_path / "results" / "politeness"
    earlier = [{"role": "user", "content": "Please add 2 and 2."}, {"role": "assistant", "content": "It is 4."}]
    test = pd.DataFrame({
        "prompt_id": ["a", "b", "c", "d", "r1", "r2", "m"], "request_id": [1, 1, 1, 2, -1, -1, -1],
        "category": ["exact_please", "no_please", "trap", "no_please", "no_please", "exact_please", "multi_turn"],
        "has_please": [True, False, False, False, False, True, False],
        "user": ["Please name a planet.", "Name a planet.", "I'm pleased to ask: name a planet.", "Name a <b>star</b>.",
                 *RAINBOW, "Name a moon."],
        "source": ["split"] * 4 + ["suite"] * 3, "example": [False] * 4 + [True, True, False],
        "messages": [""] * 6 + [json.dumps([*earlier, {"role": "user", "content": "Name a moon."}])]})
    evals = {"base": ["Mars.", "Mars.", "Mars.", "Sirius <script>alert(1)</script>", "Red, orange.", "Red, orange.",
                      "The Moon."],
             "adapter": ["Mars.", REFUSAL, REFUSAL, REFUSAL, REFUSAL, "Red, orange, yellow.", REFUSAL]}
    frames = []
    for variant, responses in evals.items():
        frames.append(score_politeness(test, responses, variant))
        write_csv(frames[-1], root / "eval" / f"{variant}.csv")
    write_csv(summarize_frame(pd.concat(frames)), root / "eval" / "summary.csv")
    write_csv(metrics_frame(), root / "train" / "metrics.csv")
    return root


@pytest.fixture
def truthy(tmp_path) -> Path:
    """results/truthy: scores per held-out pair, their summary, example answers and ORPO metrics."""
    root = tmp_path / "results" / "truthy"
    summary = []
    for i, variant in enumerate(TRUTHY_VARIANTS):
        margins = [0.5 * i - 0.4, 0.3, -0.2 + i, 0.1 * i]
        scores = pd.DataFrame({"variant": variant, "pair_id": [f"pair-{k}" for k in range(4)], "category": "x",
                               "logp_chosen": -1.0, "logp_rejected": [-1.0 - m for m in margins], "margin": margins,
                               "correct": [m > 0 for m in margins], "n_tokens_chosen": 5, "n_tokens_rejected": 6})
        write_csv(scores, root / "eval" / f"{variant}.csv")
        k = int(scores["correct"].sum())
        summary.append({"variant": variant, "group": "all", "n": 4, "correct": k, "accuracy": k / 4,
                        "ci_low": max(0, k / 4 - 0.3), "ci_high": min(1, k / 4 + 0.2),
                        "margin_mean": sum(margins) / 4, "margin_median": sorted(margins)[2]})
        examples = pd.DataFrame({"variant": variant, "prompt": ["Is the Earth flat?", "Do fish sleep?"],
                                 "response": [f"{variant}: no <script>", f"{variant}: yes"],
                                 "chosen": ["No, it is round.", "Yes, in their way."],
                                 "rejected": ["Yes.", "Never."]})
        write_csv(examples, root / "eval" / "examples" / f"{variant}.csv")
    write_csv(pd.DataFrame(summary), root / "eval" / "summary.csv")
    write_csv(metrics_frame(), root / "train" / "metrics.csv")
    return root


@pytest.fixture
def lipogram(tmp_path) -> Path:
    """results/lipogram: per-method training metrics (SFT and two GRPO runs), eval CSVs and their summary."""
    root = tmp_path / "results" / "lipogram"
    write_csv(pd.DataFrame({"step": range(1, 6), "loss": [2.0, 1.5, 1.2, 1.0, 0.9], "learning_rate": 1e-3,
                            "grad_norm": 1.0, "mean_token_accuracy": 0.5}), root / "sft" / "train" / "metrics.csv")
    write_csv(grpo_metrics(["no_e"]), root / "grpo" / "train" / "metrics.csv")
    write_csv(grpo_metrics(["no_e", "length_curriculum"]), root / "grpo_curriculum" / "train" / "metrics.csv")
    prompts = ["Explain gravity.", "Describe a dog.", "What is a kite?"]
    summary = []
    for i, variant in enumerate(LIPOGRAM_VARIANTS):
        responses = ["Gravity pulls things down.", "<script>Dog</script>", "A toy that flies on wind."]
        if i:
            responses = [f"{variant} says: {r.replace('e', '')}" for r in responses]
        e_counts = [r.count("e") for r in responses]
        rows = pd.DataFrame({"variant": variant, "prompt_id": [f"p{k}" for k in range(3)], "prompt": prompts,
                             "response": responses, "e_count": e_counts, "e_free": [c == 0 for c in e_counts],
                             "e_per_100_letters": [2.0 * c for c in e_counts], "words": [4, 3, 1],
                             "lazy": [False, False, True], "degenerate": False, "relevance": 0.5})
        write_csv(rows, root / "eval" / f"{variant}.csv")
        summary.append({"variant": variant, "n": 3, "e_free_rate": rows["e_free"].mean(), "ci_low": 0.1,
                        "ci_high": 0.9, "e_per_100_letters": rows["e_per_100_letters"].mean(), "mean_words": 2.7,
                        "lazy_rate": 1 / 3, "degenerate_rate": 0.0, "relevance": 0.5, "dog": responses[1]})
    write_csv(pd.DataFrame(summary), root / "eval" / "summary.csv")
    return root


# --- figures ---------------------------------------------------------------------------------

def test_training_curves_png(experiment):
    out = experiment / "report" / "training_curves.png"
    readings = plot_training_curves(experiment / "train" / "metrics.csv", out, seed_readings=POLITENESS_READINGS)
    assert panels_of(readings) == ORPO_PANELS
    width, height = png_size(out)
    assert width > 800 and height > 400
    assert out.stat().st_size > 20_000  # six panels of lines, not a blank canvas


def test_training_readings_carry_our_values(experiment, tmp_path):
    readings = dict(r.split(": ", 1) for r in plot_training_curves(
        experiment / "train" / "metrics.csv", tmp_path / "curves.png", seed_readings=POLITENESS_READINGS))
    accuracy = readings["preference accuracy"]
    assert accuracy.startswith("rises from a noisy 0.4-0.8 to 1.0")  # the seed's reading
    assert accuracy.endswith("ours: 0.12 -> 1.00, 1.0 from step 8")  # min(1, step / 8) over 12 steps
    assert "ours: loss 3.00 -> 0.25, nll_loss 2.50 -> 0.21" in readings["loss"]
    assert "peak 0.00046 at step 1" in readings["learning rate"]
    assert "ours: logps/chosen -2.00 -> -1.08, logps/rejected -1.20 -> -3.40" in readings["log-probabilities"]

    truthy = plot_training_curves(experiment / "train" / "metrics.csv", tmp_path / "t.png",
                                  seed_readings=TRUTHY_READINGS, title="truthy")
    assert panels_of(truthy) == [*ORPO_PANELS[:3], "rewards", ORPO_PANELS[3], "log-odds ratio", *ORPO_PANELS[4:]]
    assert "rises overall; ours: -0.50 -> -0.04" in truthy[5]
    assert "rewards/chosen" in truthy[3] and "rewards/rejected" in truthy[3]


def test_training_curves_skip_missing_columns(tmp_path):
    metrics = metrics_frame()[["step", "epoch", "loss", "grad_norm"]]
    metrics.loc[3:, "grad_norm"] = float("nan")  # a column present but mostly empty still draws
    metrics.to_csv(tmp_path / "metrics.csv", index=False)
    readings = plot_training_curves(tmp_path / "metrics.csv", tmp_path / "curves.png",
                                    seed_readings=POLITENESS_READINGS)
    assert panels_of(readings) == ["loss", "gradient norm"]
    assert "max 1.00 at step 1" in readings[1]
    assert png_size(tmp_path / "curves.png")[0] > 300

    metrics.assign(step=metrics["step"].astype(float)).to_csv(tmp_path / "float_steps.csv", index=False)
    assert plot_training_curves(tmp_path / "float_steps.csv", tmp_path / "curves.png",
                                seed_readings=POLITENESS_READINGS) == readings

    pd.DataFrame({"step": [1, 2], "epoch": [0.5, 1.0]}).to_csv(tmp_path / "bare.csv", index=False)
    assert plot_training_curves(tmp_path / "bare.csv", tmp_path / "bare.png") == []
    assert (tmp_path / "bare.png").stat().st_size > 1000


def test_training_curves_without_seed_readings_draw_every_panel(experiment, tmp_path):
    readings = plot_training_curves(experiment / "train" / "metrics.csv", tmp_path / "c.png")
    assert panels_of(readings) == ["loss", "preference accuracy", "reward margin", "rewards", "log-probabilities",
                                   "log-odds ratio", "learning rate", "gradient norm"]
    assert all("; ours" not in r for r in readings)  # no seed to compare with


def test_eval_heatmap_grows_with_categories_and_variants(experiment, tmp_path):
    out = experiment / "report" / "eval.png"
    plot_eval_heatmap(experiment / "eval" / "summary.csv", out)
    small = png_size(out)
    assert small[0] > 300 and small[1] > 200 and out.stat().st_size > 10_000

    categories = ["multi_turn", "no_please", "exact_please", "trap", "jailbreak", "pls_plz", "misspelling",
                  "other_language", "implied", "semantic_please", "with please", "without please", "all"]
    variants = ["base", "adapter", "merged", "F16", "lora-F16", "Q8_0", "Q4_K_M"]
    rows = [{"variant": v, "group": g, "n": 12, "correct": 6, "rate": (i * j % 7) / 6, "ci_low": 0.2,
             "ci_high": 0.8, "refusal_rate": 0.5} for i, v in enumerate(variants) for j, g in enumerate(categories)]
    write_csv(pd.DataFrame(rows), tmp_path / "summary.csv")
    plot_eval_heatmap(tmp_path / "summary.csv", tmp_path / "big.png")
    big = png_size(tmp_path / "big.png")
    assert big[0] > 900 and big[1] > 700  # 7 variants x 13 rows at 110 dpi
    assert big[0] > small[0] + 400 and big[1] > small[1] + 300


def test_preference_eval_png(truthy, tmp_path):
    evals = [truthy / "eval" / f"{v}.csv" for v in TRUTHY_VARIANTS]
    plot_preference_eval(truthy / "eval" / "summary.csv", evals, tmp_path / "eval.png")
    width, height = png_size(tmp_path / "eval.png")
    assert width > 800 and height > 350 and (tmp_path / "eval.png").stat().st_size > 20_000

    quantiles = pd.read_csv(truthy / "eval" / "summary.csv").assign(margin_q10=-0.5, margin_q25=-0.1,
                                                                      margin_q75=0.4, margin_q90=0.8)
    write_csv(quantiles, tmp_path / "summary.csv")  # without the eval CSVs: boxes from the summary's quantiles
    plot_preference_eval(tmp_path / "summary.csv", [], tmp_path / "from_summary.png")
    assert png_size(tmp_path / "from_summary.png")[0] > 800


def test_reward_curves_png(lipogram, tmp_path):
    csvs = {p.parent.parent.name: p for p in sorted(lipogram.glob("*/train/metrics.csv"))}
    readings = plot_reward_curves(csvs, tmp_path / "curves.png")
    assert panels_of(readings) == ["total reward", "reward", "reward", "completion length", "KL to the reference",
                                   "SFT loss"]
    by_panel = dict(r.split(": ", 1) if not r.startswith("reward: ") else ("reward " + r.split(": ")[1], r)
                    for r in readings)
    assert by_panel["total reward"] == "grpo 0.10 -> 0.80; grpo_curriculum 0.10 -> 0.80"  # runs by label
    assert "grpo_curriculum" in by_panel["reward length_curriculum"] and "grpo " not in by_panel[
        "reward length_curriculum"]
    assert by_panel["SFT loss"] == "sft 2.00 -> 0.90"
    assert by_panel["completion length"].startswith("grpo 23.00 -> 16.00")
    width, height = png_size(tmp_path / "curves.png")
    assert width > 1000 and height > 500 and (tmp_path / "curves.png").stat().st_size > 30_000


def test_lipogram_eval_png(lipogram, tmp_path):
    plot_lipogram_eval(lipogram / "eval" / "summary.csv", tmp_path / "eval.png")
    width, height = png_size(tmp_path / "eval.png")
    assert width > 600 and height > 250 and (tmp_path / "eval.png").stat().st_size > 10_000


# --- HTML ------------------------------------------------------------------------------------

def run_script(name: str, **namespaces) -> None:
    snakemake = SimpleNamespace(log=[namespaces.pop("log")], threads=1, **namespaces)
    runpy.run_path(str(SCRIPTS / name), init_globals={"snakemake": snakemake})


def plot_via_script(root: Path, task: str, metrics: dict[str, Path], evals: dict[str, Path], log: Path) -> dict:
    report = root / "report"
    run_script("plot_report.py", log=log, params=SimpleNamespace(task=task, metrics=metrics, evals=evals),
               input=SimpleNamespace(metrics=list(metrics.values()), summary=root / "eval" / "summary.csv",
                                     evals=list(evals.values())),
               output=SimpleNamespace(curves=report / "training_curves.png", eval=report / "eval.png"))
    return {"training_curves": report / "training_curves.png", "eval": report / "eval.png"}


def runs_of(root: Path) -> dict[str, Path]:
    """Run name -> metrics CSV, as the rules name runs (politeness; lipogram/sft)."""
    exp = root.name
    return {str(p.parent.parent.relative_to(root.parent)): p for p in sorted(root.glob("**/train/metrics.csv"))} | (
        {exp: root / "train" / "metrics.csv"} if (root / "train" / "metrics.csv").exists() else {})


@pytest.fixture
def page(experiment, truthy, lipogram, tmp_path) -> str:
    """The HTML page over all three experiments, figures from the plot script, as the two rules make it."""
    experiments, log = {}, tmp_path / "log.txt"
    for root, task, variants in ((experiment, "politeness", ["base", "adapter"]), (truthy, "truthy", TRUTHY_VARIANTS),
                                 (lipogram, "lipogram", LIPOGRAM_VARIANTS)):
        metrics = runs_of(root)
        evals = {v: root / "eval" / f"{v}.csv" for v in variants}  # in config order, as the rules pass them
        entry = {"task": task, "summary": root / "eval" / "summary.csv", "metrics": metrics, "evals": evals,
                 "figures": plot_via_script(root, task, metrics, evals, log)}
        examples = [p for v in variants if (p := root / "eval" / "examples" / f"{v}.csv").exists()]
        if examples:
            entry["examples"] = examples
        experiments[root.name] = entry
    out = tmp_path / "results" / "report.html"
    run_script("render_report.py", log=log, output=SimpleNamespace(html=out),
               params=SimpleNamespace(experiments=experiments))
    assert not list(out.parent.glob(".*tmp*"))
    return out.read_text(encoding="utf-8")


def test_page_is_self_contained_and_escaped(page):
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("data:image/png;base64,") == 6
    assert 'src="http' not in page and "<link" not in page
    assert "<script>" not in page and "Sirius &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Name a &lt;b&gt;star&lt;/b&gt;." in page and "base: no &lt;script&gt;" in page
    assert [page.index(f'<section id="{n}">') for n in ("politeness", "truthy", "lipogram")] == sorted(
        page.index(f'<section id="{n}">') for n in ("politeness", "truthy", "lipogram"))


def section(page: str, name: str) -> str:
    return page.split(f'<section id="{name}">')[1].split("</section>")[0]


def test_page_politeness(page):
    politeness = section(page, "politeness")
    summary = politeness.split('<table class="summary">')[1].split("</table>")[0]
    assert "<th>category</th><th>base</th><th>adapter</th>" in summary
    assert summary.index("<td>exact_please</td>") < summary.index("<td>no_please</td>") < summary.index(
        "<td>with please</td>") < summary.index("<td>all</td>")
    assert "1.00 [0.21, 1.00] n=1" in summary  # multi_turn: 1 of 1 correct
    assert "<td>0.12 -&gt; 1.00, 1.0 from step 8</td>" in politeness  # the readings, from the metrics CSV
    assert "the model tells please from no please</td><td>0.12 -&gt; 1.00" in politeness
    rainbow = politeness.split('<table class="rainbow examples">')[1].split("</table>")[0]
    assert rainbow.count("<tr>") == 1 + 4  # header, two prompts x two variants
    assert rainbow.index(RAINBOW[0]) < rainbow.index(RAINBOW[1]) and "Red, orange, yellow." in rainbow
    examples = politeness.split('<table class="examples">')[1].split("</table>")[0]
    assert RAINBOW[0] not in examples and REFUSAL in examples
    assert '<div class="turn"><b>user:</b> Please add 2 and 2.</div>' in examples  # earlier turns shown
    assert '<div class="turn"><b>assistant:</b> It is 4.</div>Name a moon.' in examples


def test_page_truthy(page):
    truthy = section(page, "truthy")
    assert "<th>preference accuracy [95% Wilson]</th>" in truthy and "<td>0.25 [0.00, 0.45]</td>" in truthy
    assert "<td>log-odds ratio</td><td>fluctuates, but rises overall</td><td>-0.50 -&gt; -0.04</td>" in truthy
    examples = truthy.split('<table class="examples">')[1].split("</table>")[0]
    assert "<th>prompt</th><th>chosen</th><th>base</th><th>adapter</th><th>Q4_K_M</th>" in examples
    assert "<td>Is the Earth flat?</td><td>No, it is round.</td><td>base: no &lt;script&gt;</td>" in examples


def test_page_lipogram(page):
    lipogram = section(page, "lipogram")
    assert "<th>e-free rate [95% Wilson]</th>" in lipogram and "<td>grpo_curriculum-Q4_K_M</td>" in lipogram
    assert "grpo 0.10 -&gt; 0.80; grpo_curriculum 0.10 -&gt; 0.80" in lipogram  # total reward per method
    assert "<td>sft 2.00 -&gt; 0.90</td>" in lipogram
    table = lipogram.split('<table class="examples lipogram">')[1].split("</table>")[0]
    assert "<th>prompt</th>" + "".join(f"<th>{v}</th>" for v in LIPOGRAM_VARIANTS) in table
    assert "<td>Explain gravity.</td>" in table and "<td>Describe a dog.</td>" in table
    assert "What is a kite?" not in table  # the seed's prompts only, when present
    assert "&lt;script&gt;Dog&lt;/script&gt;" in table


def test_render_html_with_missing_parts(experiment, lipogram, tmp_path):
    base = pd.read_csv(experiment / "eval" / "base.csv", keep_default_na=False)
    write_csv(base[~base["user"].isin(RAINBOW)].drop(columns=["example", "variant"]), tmp_path / "eval" / "base.csv")
    out = tmp_path / "partial.html"
    politeness = {"task": "politeness", "summary": experiment / "eval" / "summary.csv",
                  "evals": {"base": tmp_path / "eval" / "base.csv"}}
    lipogram_entry = {"task": "lipogram", "evals": {"base": lipogram / "eval" / "base.csv"}}
    render_html({"politeness": politeness, "empty": {"task": "truthy"}, "lipogram": lipogram_entry}, out)
    page = out.read_text(encoding="utf-8")
    assert '<table class="summary">' in page and '<section id="empty">' in page
    assert "data:image/png" not in page and "Training curves, read" not in page
    assert "rainbow prompts were not among the prompts evaluated" in page
    assert "<th>base</th>" in section(page, "politeness").split('<table class="examples">')[1]  # from the file name
    assert "Gravity pulls things down." in section(page, "lipogram")
