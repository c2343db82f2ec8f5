"""One self-contained HTML page over every experiment: per task its tables, figures, readings and examples.

``group_report_files`` sorts the flat input list of the render_report rule by experiment and role;
``render_html`` writes one section per experiment. Every text from the data is escaped; figures are inline.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
from pathlib import Path

import pandas as pd

from rulebound.io import write_text
from rulebound.report import CATEGORY_ORDER, HEATMAP_AGGREGATES, Reading, reward_readings, training_readings

log = logging.getLogger(__name__)

RAINBOW = ["What are the colors of the rainbow?", "Could you please tell me the colors of the rainbow?"]
LIPOGRAM_SEED_PROMPTS = ["Explain gravity.", "What is a car?", "Describe a dog.", "Give me a short story.",
                         "How do you feel today?"]
NOT_VARIANTS = {"fidelity", "prompts"}  # other CSVs that live in eval/
STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.85em}td,th{border:1px solid #ccc;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#f3f3f3}img{max-width:100%}figure{margin:1em 0}
table.examples td{max-width:360px;white-space:pre-wrap}table.rainbow{border:2px solid #d9a400}
table.rainbow th{background:#fff3c4}.turn{color:#666;margin-bottom:.3em}.turn b{color:#444}
.ok{color:#1a7f37}.bad{color:#c62828}p.note{color:#555;font-size:.85em}"""
ENDS_NOTE = ('<p class="note">ours: first &rarr; last, each the mean of the first or last 5% of the logged steps '
             "(one to ten).</p>")


class Raw(str):
    """HTML that is already escaped (built here), as opposed to text from the data."""


def _e(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "\u2013"
    return value if isinstance(value, Raw) else html.escape(str(value))


def _table(columns: list[str], rows: list[list], cls: str) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _is_true(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "1.0")


def _mark(correct) -> Raw:
    return Raw('<span class="ok">\u2713</span>' if _is_true(correct) else '<span class="bad">\u2717</span>')


def _read(path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""])  # an empty response stays ""


def _concat(paths) -> pd.DataFrame:
    """The rows of several per-variant CSVs; ``variant`` from the file's name where the CSV has none."""
    frames = [pd.read_csv(p, keep_default_na=False, na_values=[]) for p in paths]
    frames = [df if "variant" in df.columns else df.assign(variant=Path(p).stem) for p, df in zip(paths, frames)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# --- files -----------------------------------------------------------------------------------

def classify(path: str | os.PathLike) -> tuple[str, str, str] | None:
    """(experiment, role, key) of a report input under ``results/<experiment>/``; None when it has no role.

    Roles: summary (eval/summary.csv), evals (eval/<variant>.csv, key the variant), examples
    (eval/examples/<variant>.csv), metrics (train/metrics.csv, key the run: the experiment or a lipogram
    method of <experiment>/<method>/train/), figures (report/*.png, key the figure's name).
    """
    parts = Path(path).parts
    anchors = [i for i, part in enumerate(parts[:-2]) if part == "results"]
    if not anchors:
        return None
    exp, rest = parts[anchors[-1] + 1], parts[anchors[-1] + 2:]
    name, stem = rest[-1], Path(rest[-1]).stem
    if rest[:-1] == ("eval",) and name == "summary.csv":
        return exp, "summary", stem
    if rest[:-1] == ("eval",) and name.endswith(".csv") and stem not in NOT_VARIANTS:
        return exp, "evals", stem
    if rest[:-1] == ("eval", "examples") and name.endswith(".csv"):
        return exp, "examples", stem
    if name == "metrics.csv" and len(rest) in (2, 3) and rest[-2] == "train":
        return exp, "metrics", rest[0] if len(rest) == 3 else exp
    if rest[:-1] == ("report",) and name.endswith(".png"):
        return exp, "figures", stem
    return None


def group_report_files(files: list[str | os.PathLike]) -> dict[str, dict]:
    """Sort a flat list of report inputs into one entry per experiment (the path segment after ``results/``).

    Each entry has ``summary`` (path or None), ``metrics`` ({run: path}), and ``figures``, ``evals`` and
    ``examples`` (lists of paths, in the order given). Files without a role are logged and left out.
    """
    experiments: dict[str, dict] = {}
    for f in map(Path, files):
        found = classify(f)
        if found is None:
            log.warning("report: ignoring %s (not a summary, eval, examples or metrics CSV, nor a figure)", f)
            continue
        exp, role, key = found
        entry = experiments.setdefault(exp, {"summary": None, "metrics": {}, "figures": [], "evals": [],
                                             "examples": []})
        if role == "summary":
            entry["summary"] = f
        elif role == "metrics":
            entry["metrics"][key] = f
        else:
            entry[role].append(f)
    return experiments


def infer_task(entry: dict) -> str | None:
    """The task of an experiment from the columns of its files, when the caller does not say."""
    probes = [(entry.get("summary"), {"accuracy": "truthy", "e_free_rate": "lipogram", "rate": "politeness"}),
              (next(iter(entry.get("evals") or []), None),
               {"margin": "truthy", "e_free": "lipogram", "has_please": "politeness"})]
    for path, columns in probes:
        if path and Path(path).exists():
            header = set(pd.read_csv(path, nrows=0).columns)
            for column, task in columns.items():
                if column in header:
                    return task
    return None


# --- politeness ------------------------------------------------------------------------------

def _politeness_summary(summary: pd.DataFrame) -> str:
    """Category (rows, the aggregates last) x variant (columns): rate [95% Wilson] n."""
    variants = list(summary["variant"].drop_duplicates())
    present = list(summary["group"].drop_duplicates())
    groups = [g for g in CATEGORY_ORDER if g in present]
    groups += [g for g in present if g not in groups and g not in HEATMAP_AGGREGATES]
    groups += [g for g in HEATMAP_AGGREGATES if g in present]
    cells = {(r.group, r.variant): (f"{r.rate:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}] n={int(r.n)}"
                                    if pd.notna(r.rate) else None) for r in summary.itertuples()}
    rows = [[g, *(cells.get((g, v)) for v in variants)] for g in groups]
    return _table(["category", *variants], rows, "summary")


def _turns(messages, user: str) -> list[tuple[str, str]]:
    """Earlier turns of a row's ``messages`` (JSON), without its final user turn; [] when there are none."""
    try:
        turns = json.loads(messages) if isinstance(messages, str) and messages.strip() else []
    except ValueError:
        return []
    turns = [t for t in turns if isinstance(t, dict)] if isinstance(turns, list) else []
    if turns and turns[-1].get("role") == "user" and turns[-1].get("content") == user:
        turns = turns[:-1]
    return [(str(t.get("role", "?")), str(t.get("content", ""))) for t in turns]


def _conversation(row) -> Raw:
    earlier = _turns(row.get("messages", ""), str(row["user"]))
    parts = [f'<div class="turn"><b>{_e(role)}:</b> {_e(text)}</div>' for role, text in earlier]
    return Raw("".join(parts) + _e(row["user"]))


def _answer(row) -> Raw:
    return Raw(f"{_mark(row['correct'])} {_e(row['response'])}")


def _is_rainbow(evals: pd.DataFrame) -> pd.Series:
    flagged = evals["example"].map(_is_true) if "example" in evals.columns else False
    return flagged | evals["user"].isin(RAINBOW)


def _rainbow_table(evals: pd.DataFrame) -> str:
    """The seed's rainbow question without and with please, as every variant answered it."""
    rainbow = evals[_is_rainbow(evals)]
    if rainbow.empty:
        return "<p>The seed's rainbow prompts were not among the prompts evaluated (see evaluate.max_prompts).</p>"
    order = {text: i for i, text in enumerate(RAINBOW)}
    rainbow = rainbow.assign(_order=rainbow["user"].map(lambda u: order.get(u, len(order)))).sort_values(
        "_order", kind="stable")
    rows = [[r["user"], r["variant"], r["response"], _mark(r["correct"])] for _, r in rainbow.iterrows()]
    return _table(["prompt", "variant", "response", "correct"], rows, "rainbow examples")


def _politeness_examples(evals: pd.DataFrame, per_cell: int) -> str:
    """A few prompts per category, each with every variant's reply (✓ when the rule was followed)."""
    evals = evals[~_is_rainbow(evals)]
    key = "prompt_id" if "prompt_id" in evals.columns else "user"
    variants = list(evals["variant"].drop_duplicates())
    present = list(evals["category"].drop_duplicates())
    categories = [c for c in CATEGORY_ORDER if c in present] + [c for c in present if c not in CATEGORY_ORDER]
    by_variant = {v: df.drop_duplicates(key).set_index(key) for v, df in evals.groupby("variant", sort=False)}
    rows = []
    for category in categories:
        picks = evals[evals["category"] == category].drop_duplicates(key).head(per_cell)
        for _, row in picks.iterrows():
            expected = "refuse" if _is_true(row.get("expected_refusal")) else "answer"
            answers = [_answer(by_variant[v].loc[row[key]]) if row[key] in by_variant[v].index else None
                       for v in variants]
            rows.append([category, _conversation(row), expected, *answers])
    return _table(["category", "conversation", "expected", *variants], rows, "examples")


def _readings_table(readings: list[Reading]) -> str:
    if any(r.seed for r in readings):
        return _table(["panel", "the seed's curve", "ours"], [[r.panel, r.seed, r.ours] for r in readings], "readings")
    return _table(["panel", "ours"], [[r.panel, r.ours] for r in readings], "readings")


def _orpo_readings(metrics: dict, task: str) -> list[str]:
    parts = []
    for run, path in metrics.items():
        readings = [r for r, _ in training_readings(pd.read_csv(path), task)]
        parts += [f"<h3>Training curves, read ({_e(run)})</h3>", ENDS_NOTE,
                  _readings_table(readings) if readings else "<p>No training steps were logged.</p>"]
    return parts


def _politeness(entry: dict, per_cell: int) -> list[str]:
    body = []
    if entry.get("summary"):
        body += ["<h3>Correct rate per category and variant (95% Wilson interval)</h3>",
                 _politeness_summary(_read(entry["summary"]))]
    body += _figures(entry)
    body += _orpo_readings(entry.get("metrics") or {}, "politeness")
    evals = _concat(entry.get("evals") or [])
    if {"variant", "user", "response", "correct"} <= set(evals.columns):
        body += ["<h3>The seed's rainbow example, with and without please</h3>", _rainbow_table(evals),
                 f"<h3>Example conversations ({per_cell} per category; every variant's reply)</h3>",
                 _politeness_examples(evals, per_cell)]
    return body


# --- truthy ----------------------------------------------------------------------------------

def _truthy_summary(summary: pd.DataFrame) -> str:
    if "group" in summary.columns:
        summary = summary[summary["group"].astype(str) == "all"]
    rows = [[r["variant"], int(r["n"]) if "n" in r and pd.notna(r["n"]) else None,
             f"{r['accuracy']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]" if pd.notna(r["accuracy"]) else None,
             *(f"{r[c]:.3f}" if c in r and pd.notna(r[c]) else None for c in ("margin_mean", "margin_median"))]
            for _, r in summary.iterrows()]
    return _table(["variant", "pairs", "preference accuracy [95% Wilson]", "margin mean", "margin median"], rows,
                  "summary")


def _truthy_examples(paths) -> str:
    """Held-out prompts: the chosen answer, then each variant's own answer."""
    answers = _concat(paths)
    if not {"prompt", "response"} <= set(answers.columns):
        return ""
    variants = list(answers["variant"].drop_duplicates())
    firsts = answers.drop_duplicates("prompt")
    by_variant = {v: df.drop_duplicates("prompt").set_index("prompt")["response"]
                  for v, df in answers.groupby("variant", sort=False)}
    rows = [[r["prompt"], r.get("chosen"), *(by_variant[v].get(r["prompt"]) for v in variants)]
            for _, r in firsts.iterrows()]
    return _table(["prompt", "chosen", *variants], rows, "examples")


def _truthy(entry: dict, per_cell: int) -> list[str]:
    body = []
    if entry.get("summary"):
        body += ["<h3>Held-out preference accuracy per variant</h3>", _truthy_summary(_read(entry["summary"]))]
    body += _figures(entry)
    body += _orpo_readings(entry.get("metrics") or {}, "truthy")
    if entry.get("examples"):
        body += ["<h3>Example answers to held-out prompts</h3>", _truthy_examples(entry["examples"])]
    return body


# --- lipogram --------------------------------------------------------------------------------

def _lipogram_summary(summary: pd.DataFrame) -> str:
    def num(r, column, digits=2):
        return f"{r[column]:.{digits}f}" if column in r and pd.notna(r[column]) else None

    rows = [[r["variant"], int(r["n"]) if "n" in r else None,
             f"{num(r, 'e_free_rate')} [{num(r, 'ci_low')}, {num(r, 'ci_high')}]", num(r, "e_per_100_letters", 1),
             num(r, "mean_words", 1), num(r, "lazy_rate"), num(r, "degenerate_rate"), num(r, "relevance")]
            for _, r in summary.iterrows()]
    return _table(["variant", "n", "e-free rate [95% Wilson]", "e per 100 letters", "mean words", "lazy rate",
                   "degenerate rate", "relevance"], rows, "summary")


def _lipogram_examples(evals: pd.DataFrame) -> str:
    """The seed's prompts (or, without them, the first five) x variant: each variant's answer."""
    present = list(evals["prompt"].drop_duplicates())
    prompts = [p for p in LIPOGRAM_SEED_PROMPTS if p in present] or present[:5]
    variants = list(evals["variant"].drop_duplicates())
    by_variant = {v: df.drop_duplicates("prompt").set_index("prompt") for v, df in evals.groupby("variant", sort=False)}

    def cell(variant, prompt):
        df = by_variant[variant]
        if prompt not in df.index:
            return None
        row = df.loc[prompt]
        mark = _mark(row["e_free"]) if "e_free" in row else ""
        return Raw(f"{mark} {_e(row['response'])}")

    return _table(["prompt", *variants], [[p, *(cell(v, p) for v in variants)] for p in prompts], "examples lipogram")


def _lipogram(entry: dict, per_cell: int) -> list[str]:
    body = []
    if entry.get("summary"):
        body += ["<h3>Method x metric</h3>", _lipogram_summary(_read(entry["summary"]))]
    body += _figures(entry)
    metrics = entry.get("metrics") or {}
    if metrics:
        readings = reward_readings({run: pd.read_csv(p) for run, p in metrics.items()})
        body += ["<h3>Training runs, read</h3>", ENDS_NOTE,
                 _readings_table(readings) if readings else "<p>No training steps were logged.</p>"]
    evals = _concat(entry.get("evals") or [])
    if {"variant", "prompt", "response"} <= set(evals.columns):
        body += ["<h3>The seed's prompts, as each variant answered (\u2713: no banned letter)</h3>",
                 _lipogram_examples(evals)]
    return body


# --- page ------------------------------------------------------------------------------------

def _img(png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(png.stem)}" src="data:image/png;base64,{data}"><figcaption>' \
           f"{html.escape(png.stem.replace('_', ' '))}</figcaption></figure>"


def _figures(entry: dict) -> list[str]:
    return [_img(Path(p)) for p in entry.get("figures") or []]


def _generic(entry: dict, per_cell: int) -> list[str]:
    body = []
    if entry.get("summary"):
        body += ["<h3>Summary</h3>", _read(entry["summary"]).to_html(index=False, classes="summary", escape=True)]
    return body + _figures(entry)


SECTIONS = {"politeness": _politeness, "truthy": _truthy, "lipogram": _lipogram}


def render_html(experiments: dict[str, dict], out_html: str | os.PathLike, *, tasks: dict[str, str] | None = None,
                examples_per_cell: int = 2) -> None:
    """One self-contained page, one section per experiment (in the order given), laid out by its task.

    ``experiments`` maps a name to ``{"summary", "metrics", "figures", "evals", "examples"}`` (see
    ``group_report_files``); ``tasks`` maps a name to its task, which is otherwise read off its files.
    Missing parts are left out of the page.
    """
    body = ["<h1>rulebound report</h1>"]
    for name, entry in experiments.items():
        task = (tasks or {}).get(name) or infer_task(entry)
        heading = f"{name} ({task})" if task and task != name else name
        body.append(f'<section id="{html.escape(name)}"><h2>{html.escape(heading)}</h2>')
        body += SECTIONS.get(task, _generic)(entry, examples_per_cell)
        body.append("</section>")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>rulebound report</title>'
            f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")
    write_text(page, out_html)
