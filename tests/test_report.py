"""Figures are real PNGs, missing metric columns are tolerated, the HTML page is self-contained."""

from __future__ import annotations

import math
import runpy
import struct
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from rulebound import REFUSAL
from rulebound.evaluate import score_politeness, summarize_frame
from rulebound.io import write_csv
from rulebound.report import group_report_files, plot_eval, plot_training_curves, render_html

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def metrics_frame(steps: int = 12) -> pd.DataFrame:
    rows = []
    for s in range(1, steps + 1):
        rows.append({"step": s, "epoch": s / steps, "loss": 3 / s, "nll_loss": 2.5 / s, "log_odds_ratio": -0.5 / s,
                     "rewards/chosen": -0.1, "rewards/rejected": -0.1 - 0.02 * s, "rewards/accuracies": min(1, s / 8),
                     "rewards/margins": 0.02 * s, "logps/chosen": -1 - 1 / s, "logps/rejected": -1 - 0.2 * s,
                     "logits/chosen": 1.0, "logits/rejected": 1.2, "learning_rate": 5e-4 * (1 - s / steps),
                     "grad_norm": 1 / math.sqrt(s)})
    return pd.DataFrame(rows)


@pytest.fixture
def experiment(tmp_path) -> Path:
    """results/politeness with two eval CSVs, a summary and training metrics."""
    root = tmp_path / "results" / "politeness"
    users = ["Please name a planet.", "Name a planet.", "I'm pleased to ask: name a planet.", "Name a <b>star</b>."]
    test = pd.DataFrame({"prompt_id": ["a", "b", "c", "d"], "request_id": [1, 1, 1, 2],
                         "category": ["please", "no_please", "trap", "no_please"],
                         "has_please": [True, False, False, False], "user": users})
    evals = {"base": ["Mars.", "Mars.", "Mars.", "Sirius <script>"], "adapter": ["Mars.", REFUSAL, REFUSAL, REFUSAL]}
    frames = []
    for variant, responses in evals.items():
        frames.append(score_politeness(test, responses, variant))
        write_csv(frames[-1], root / "eval" / f"{variant}.csv")
    write_csv(summarize_frame(pd.concat(frames)), root / "eval" / "summary.csv")
    write_csv(metrics_frame(), root / "train" / "metrics.csv")
    return root


def test_training_curves_png(experiment, tmp_path):
    out = experiment / "report" / "training_curves.png"
    panels = plot_training_curves(experiment / "train" / "metrics.csv", out)
    assert panels == ["loss", "preference accuracy", "reward margin", "log-probabilities", "learning rate",
                      "gradient norm"]
    width, height = png_size(out)
    assert width > 800 and height > 400
    assert out.stat().st_size > 20_000  # six panels of lines, not a blank canvas


def test_training_curves_skip_missing_columns(tmp_path):
    metrics = metrics_frame()[["step", "epoch", "loss", "grad_norm"]]
    metrics.loc[3:, "grad_norm"] = float("nan")  # a column present but mostly empty still draws
    metrics.to_csv(tmp_path / "metrics.csv", index=False)
    panels = plot_training_curves(tmp_path / "metrics.csv", tmp_path / "curves.png")
    assert panels == ["loss", "gradient norm"]
    assert png_size(tmp_path / "curves.png")[0] > 300

    pd.DataFrame({"step": [1, 2], "epoch": [0.5, 1.0]}).to_csv(tmp_path / "bare.csv", index=False)
    assert plot_training_curves(tmp_path / "bare.csv", tmp_path / "bare.png") == []
    assert (tmp_path / "bare.png").stat().st_size > 1000


def test_eval_png(experiment):
    out = experiment / "report" / "eval.png"
    plot_eval(experiment / "eval" / "summary.csv", out)
    width, height = png_size(out)
    assert width > 300 and height > 200 and out.stat().st_size > 10_000


def test_group_report_files(experiment, tmp_path):
    other = tmp_path / "results" / "other" / "eval" / "summary.csv"
    files = [str(p) for p in sorted(experiment.rglob("*.csv"))] + [str(other)]
    groups = group_report_files(files)
    assert set(groups) == {"politeness", "other"}
    assert groups["politeness"]["summary"].name == "summary.csv"
    assert groups["politeness"]["metrics"].name == "metrics.csv"
    assert sorted(p.stem for p in groups["politeness"]["evals"]) == ["adapter", "base"]
    assert groups["other"]["metrics"] is None and groups["other"]["evals"] == []


def test_render_html_via_scripts(experiment, tmp_path):
    report = experiment / "report"
    log = [tmp_path / "log.txt"]
    plot = SimpleNamespace(input=SimpleNamespace(metrics=experiment / "train" / "metrics.csv",
                                                 summary=experiment / "eval" / "summary.csv"),
                           output=SimpleNamespace(curves=report / "training_curves.png", eval=report / "eval.png"),
                           log=log, params=SimpleNamespace(), threads=1)
    runpy.run_path(str(SCRIPTS / "plot_report.py"), init_globals={"snakemake": plot})
    files = sorted(map(str, experiment.rglob("*.csv"))) + sorted(map(str, report.glob("*.png")))
    out = tmp_path / "results" / "report.html"
    render = SimpleNamespace(input=files, output=SimpleNamespace(html=out), log=log, params=SimpleNamespace(),
                             threads=1)
    runpy.run_path(str(SCRIPTS / "render_report.py"), init_globals={"snakemake": render})

    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("data:image/png;base64,") == 2
    assert 'src="http' not in page and "<link" not in page  # self-contained
    assert '<section id="politeness">' in page
    assert 'class="dataframe summary"' in page and "with please" in page and "without please" in page
    assert "1.00 [0.21, 1.00] n=1" in page  # adapter, please group: 1 of 1 correct
    assert "Sirius &lt;script&gt;" in page and "<script>" not in page  # responses are escaped
    assert REFUSAL in page and "Name a &lt;b&gt;star&lt;/b&gt;." in page
    assert "<th>rewards/accuracies</th><td>1</td>" in page  # last training step
    assert not list(out.parent.glob(".*tmp*"))


def test_render_html_with_missing_parts(experiment, tmp_path):
    out = tmp_path / "partial.html"
    render_html({"politeness": {"summary": experiment / "eval" / "summary.csv"}, "empty": {}}, out)
    page = out.read_text(encoding="utf-8")
    assert 'class="dataframe summary"' in page and '<section id="empty">' in page
    assert "data:image/png" not in page and "Last training step" not in page
