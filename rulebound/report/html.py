"""One self-contained HTML page over every experiment, one section each, laid out by the experiment's task.

``render_html`` takes a mapping (experiment -> its task and files by role, as the render_report rule
passes it) and asks each task for its section (``Task.html_section``). The helpers here (tables, marks,
figures, readings) are what sections are built from. Every text from the data is escaped; figures are inline.
"""

from __future__ import annotations

import base64
import html
import logging
import os
from pathlib import Path

import pandas as pd

from rulebound.io import write_text
from rulebound.report.figures import Reading, reward_readings, training_readings

log = logging.getLogger(__name__)

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


def esc(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "\u2013"
    return value if isinstance(value, Raw) else html.escape(str(value))


def table(columns: list[str], rows: list[list], cls: str) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def is_true(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "1.0")


def mark(correct) -> Raw:
    return Raw('<span class="ok">\u2713</span>' if is_true(correct) else '<span class="bad">\u2717</span>')


def read_csv(path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""])  # an empty response stays ""


def concat(paths) -> pd.DataFrame:
    """The rows of several per-variant CSVs; ``variant`` from the file's name where the CSV has none."""
    frames = [pd.read_csv(p, keep_default_na=False, na_values=[]) for p in paths]
    frames = [df if "variant" in df.columns else df.assign(variant=Path(p).stem) for p, df in zip(paths, frames)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# --- readings, figures, sections ---------------------------------------------------------------

def readings_table(readings: list[Reading]) -> str:
    if any(r.seed for r in readings):
        return table(["panel", "the seed's curve", "ours"], [[r.panel, r.seed, r.ours] for r in readings], "readings")
    return table(["panel", "ours"], [[r.panel, r.ours] for r in readings], "readings")


def orpo_readings(metrics: dict, seed_readings: dict[str, str] | None = None) -> list[str]:
    """Per ORPO run: its training panels read, beside a seed's readings where the task has them."""
    parts = []
    for run, path in metrics.items():
        readings = [r for r, _ in training_readings(pd.read_csv(path), seed_readings)]
        parts += [f"<h3>Training curves, read ({esc(run)})</h3>", ENDS_NOTE,
                  readings_table(readings) if readings else "<p>No training steps were logged.</p>"]
    return parts


def reward_readings_section(metrics: dict) -> list[str]:
    """GRPO/SFT runs: each panel read (first -> last per run)."""
    if not metrics:
        return []
    readings = reward_readings({run: pd.read_csv(p) for run, p in metrics.items()})
    return ["<h3>Training runs, read</h3>", ENDS_NOTE,
            readings_table(readings) if readings else "<p>No training steps were logged.</p>"]


def img(png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(png.stem)}" src="data:image/png;base64,{data}"><figcaption>' \
           f"{html.escape(png.stem.replace('_', ' '))}</figcaption></figure>"


def figures(entry: dict) -> list[str]:
    """The experiment's figures, inline, in the order given."""
    return [img(Path(p)) for p in (entry.get("figures") or {}).values()]


def generic_section(entry: dict) -> list[str]:
    """A summary table and the figures: the section of a task that lays out nothing of its own."""
    body = []
    if entry.get("summary"):
        body += ["<h3>Summary</h3>", read_csv(entry["summary"]).to_html(index=False, classes="summary", escape=True)]
    return body + figures(entry)


def conformance_section(path) -> list[str]:
    """The GGUF conformance table (``results/<experiment>/eval/conformance.csv``): a mark per file and check,
    then every row's detail."""
    if not path or not Path(path).is_file():
        return []
    df = read_csv(path).fillna("")
    checks = list(dict.fromkeys(df["check"]))
    files = list(dict.fromkeys(df["file"]))
    marks = {(r.file, r.check): mark(r.passed) for r in df.itertuples()}
    passed = sum(is_true(v) for v in df["passed"])
    rows = [[Path(f).name] + [marks.get((f, c), "\u2013") for c in checks] for f in files]
    details = [[Path(r.file).name, r.check, mark(r.passed), r.detail] for r in df.itertuples()]
    return [f"<h3>GGUF conformance</h3><p>{passed} of {len(df)} checks passed on {len(files)} exported files: "
            "chat template against the HF tokenizer's, EOS and end-of-turn tokens, greedy replies that stop at "
            "end of turn, and the Ollama Modelfile.</p>",
            table(["file", *checks], rows, "conformance"),
            "<details><summary>details</summary>" + table(["file", "check", "passed", "detail"], details,
                                                           "examples") + "</details>"]


def tracker_section(metrics: dict, out_html: str | os.PathLike) -> list[str]:
    """Links to each run's tracker files (``train.report_to``, ``results/<run>/train/tracker/`` beside its
    metrics.csv), where a run wrote any; relative to the page, so the folder can be moved as a whole."""
    links = []
    for run, csv in (metrics or {}).items():
        tracker = Path(csv).parent / "tracker"
        if tracker.is_dir() and any(p.is_file() for p in tracker.rglob("*")):
            href = os.path.relpath(tracker, Path(out_html).parent)
            links.append(f'<li><a href="{html.escape(href)}/">{html.escape(run)}</a>: <code>tensorboard --logdir '
                         f"{html.escape(str(tracker))}</code> (or the tracker the run used)</li>")
    return [f"<h3>Tracker files</h3><ul>{''.join(links)}</ul>"] if links else []


def render_html(experiments: dict[str, dict], out_html: str | os.PathLike) -> None:
    """One self-contained page, one section per experiment (in the order given), laid out by its task.

    ``experiments`` maps a name to ``{"task", "summary", "metrics": {run: csv}, "evals": {variant: csv},
    "figures": {name: png}, "conformance": csv, ...}`` plus the task's own roles (``Task.report_files``). Missing
    parts are left out.
    """
    from rulebound.tasks import registry

    body = ["<h1>rulebound report</h1>"]
    for name, entry in experiments.items():
        task = entry["task"]
        heading = f"{name} ({task})" if task != name else name
        body.append(f'<section id="{html.escape(name)}"><h2>{html.escape(heading)}</h2>')
        body += registry.get(task).html_section(entry)
        body += conformance_section(entry.get("conformance"))
        body += tracker_section(entry.get("metrics"), out_html)
        body.append("</section>")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>rulebound report</title>'
            f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")
    write_text(page, out_html)
