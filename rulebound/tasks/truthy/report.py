"""The truthy report: preference accuracy and margins per variant, the HTML section, seed 003's readings."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from rulebound.report.figures import plt, read_summary, save
from rulebound.report.html import concat, figures, orpo_readings, read_csv, table

# Seed 003 read three of its panels; the others say what to expect.
SEED_READINGS = {
        "loss": "falls with the steps",
        "preference accuracy": "not read in seed 003; should rise: the truthful answer preferred more often",
        "reward margin": "chosen pulls away from rejected",
        "rewards": "rewards/chosen and rewards/rejected, the seed's logged pair: chosen ends above rejected",
        "log-probabilities": "not read in seed 003; chosen should end above rejected",
        "log-odds ratio": "fluctuates, but rises overall",
        "learning rate": "warm-up, then cosine decay (the seed's schedule)",
        "gradient norm": "not read in seed 003; should stay bounded",
}


def _margins(eval_csvs, variants: list[str]) -> dict[str, np.ndarray]:
    frames = [pd.read_csv(p, usecols=lambda c: c in ("variant", "margin")) for p in eval_csvs or []]
    scores = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["variant", "margin"])
    return {v: scores.loc[scores["variant"] == v, "margin"].dropna().astype(float).to_numpy() for v in variants}


def _quantile_boxes(summary: pd.DataFrame) -> list[dict] | None:
    """Box statistics from the summary's margin quantiles, when the eval CSVs are not at hand."""
    needed = ["margin_q10", "margin_q25", "margin_median", "margin_q75", "margin_q90"]
    if not set(needed) <= set(summary.columns):
        return None
    return [{"whislo": r.margin_q10, "q1": r.margin_q25, "med": r.margin_median, "q3": r.margin_q75,
             "whishi": r.margin_q90, "fliers": [], "label": r.variant} for r in summary.itertuples()]


def plot_preference_eval(summary_csv: str | os.PathLike, eval_csvs, out_png: str | os.PathLike) -> None:
    """Held-out preference accuracy per variant (95% Wilson) beside each variant's margin distribution."""
    summary = read_summary(summary_csv, {"variant", "accuracy", "ci_low", "ci_high"}, "a truthy summary")
    if "group" in summary.columns:
        summary = summary[summary["group"].astype(str) == "all"]
    variants = list(summary["variant"])
    fig, (acc_ax, margin_ax) = plt.subplots(1, 2, figsize=(max(9.0, 1.6 * len(variants) + 4), 4.0))
    err = [(summary["accuracy"] - summary["ci_low"]).clip(lower=0),
           (summary["ci_high"] - summary["accuracy"]).clip(lower=0)]
    acc_ax.bar(range(len(variants)), summary["accuracy"], yerr=err, capsize=4, color="#4c72b0")
    base = summary.loc[summary["variant"] == "base", "accuracy"]
    if len(base):
        acc_ax.axhline(base.iloc[0], linestyle="--", color="#c44e52", label=f"base {base.iloc[0]:.2f}")
        acc_ax.legend(fontsize=8, loc="lower right")
    acc_ax.set_xticks(range(len(variants)), variants, rotation=30, ha="right")
    acc_ax.set(ylim=(0, 1.05), ylabel="preference accuracy (95% Wilson)", title="Truthful answer preferred")
    acc_ax.grid(axis="y", alpha=0.3)
    margins = _margins(eval_csvs, variants)
    if any(len(m) for m in margins.values()):
        margin_ax.boxplot([margins[v] for v in variants], showmeans=True)
        margin_ax.set_xticks(range(1, len(variants) + 1), variants, rotation=30, ha="right")
    elif (boxes := _quantile_boxes(summary)) is not None:
        margin_ax.bxp(boxes, showfliers=False)
        margin_ax.tick_params(axis="x", rotation=30)
    margin_ax.axhline(0, color="black", linewidth=0.8)
    margin_ax.set(ylabel="margin: mean logp(chosen) - logp(rejected)", title="Margin per held-out pair")
    margin_ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save(fig, out_png)


def _truthy_summary(summary: pd.DataFrame) -> str:
    if "group" in summary.columns:
        summary = summary[summary["group"].astype(str) == "all"]
    rows = [[r["variant"], int(r["n"]) if "n" in r and pd.notna(r["n"]) else None,
             f"{r['accuracy']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]" if pd.notna(r["accuracy"]) else None,
             *(f"{r[c]:.3f}" if c in r and pd.notna(r[c]) else None for c in ("margin_mean", "margin_median"))]
            for _, r in summary.iterrows()]
    return table(["variant", "pairs", "preference accuracy [95% Wilson]", "margin mean", "margin median"], rows,
                  "summary")


def _truthy_examples(paths) -> str:
    """Held-out prompts: the chosen answer, then each variant's own answer."""
    answers = concat(paths)
    if not {"prompt", "response"} <= set(answers.columns):
        return ""
    variants = list(answers["variant"].drop_duplicates())
    firsts = answers.drop_duplicates("prompt")
    by_variant = {v: df.drop_duplicates("prompt").set_index("prompt")["response"]
                  for v, df in answers.groupby("variant", sort=False)}
    rows = [[r["prompt"], r.get("chosen"), *(by_variant[v].get(r["prompt"]) for v in variants)]
            for _, r in firsts.iterrows()]
    return table(["prompt", "chosen", *variants], rows, "examples")


def html_section(entry: dict) -> list[str]:
    """The truthy section: accuracy per variant, figures, training readings, example answers."""
    body = []
    if entry.get("summary"):
        body += ["<h3>Held-out preference accuracy per variant</h3>", _truthy_summary(read_csv(entry["summary"]))]
    body += figures(entry)
    body += orpo_readings(entry.get("metrics") or {}, SEED_READINGS)
    if entry.get("examples"):
        body += ["<h3>Example answers to held-out prompts</h3>", _truthy_examples(entry["examples"])]
    return body
