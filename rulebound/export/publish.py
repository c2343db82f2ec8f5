"""Publishing an adapter: a self-contained hub folder (weights, config, model card, curves) and the push.

The folder holds what ``PeftModel.from_pretrained`` and a reader of the card need, nothing else: no
checkpoints, no optimizer state, no tokenizer copies. The push to the Hugging Face hub happens only when
the experiment names ``publish.repo_id`` and ``HF_TOKEN`` is set; the token is passed to the client and
never logged, written or shown: every message from a failed push is scrubbed of it.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pandas as pd

from rulebound.errors import DataError, RuleboundError
from rulebound.io import atomic_path
from rulebound.train.card import TAGS, hub_base_model

log = logging.getLogger(__name__)

ADAPTER_FILES = ["adapter_config.json", "adapter_model.safetensors"]
GROUP_ORDER = ["please", "no_please", "trap", "with please", "without please", "all"]


def _front_matter(*, base_model: str, license: str, experiment: str) -> str:
    tags = list(dict.fromkeys([*TAGS, "orpo", experiment]))
    lines = ["---", f"base_model: {hub_base_model(base_model)}", f"license: {license}", "library_name: peft",
             "pipeline_tag: text-generation", "tags:", *[f"- {t}" for t in tags], "---", ""]
    return "\n".join(lines)


def _card_body(adapter_dir: Path, experiment: str) -> str:
    """The training card written next to the adapter (front matter dropped: ours replaces it)."""
    card = adapter_dir / "README.md"
    if not card.is_file():
        return f"# {experiment} LoRA adapter\n\nTrained by the rulebound pipeline, experiment `{experiment}`.\n"
    text = card.read_text(encoding="utf-8")
    if text.startswith("---\n") and "\n---\n" in text[3:]:
        text = text[3:].split("\n---\n", 1)[1]
    return text.strip() + "\n"


def eval_table(summary_csv) -> str:
    """The eval summary as a markdown table: correct rate [95% Wilson] per variant and group.

    A preference summary (truthy) has ``accuracy``, the share of held-out pairs where the chosen answer
    is the likelier one: that is its correct rate.
    """
    summary = pd.read_csv(summary_csv)
    if "rate" not in summary.columns and "accuracy" in summary.columns:
        summary = summary.rename(columns={"accuracy": "rate"})
    missing = {"variant", "group", "n", "rate", "ci_low", "ci_high"} - set(summary.columns)
    if missing:
        raise DataError(f"{summary_csv} lacks columns {sorted(missing)}; is it an eval summary?")
    groups = [g for g in GROUP_ORDER if g in set(summary["group"])]
    groups += sorted(set(summary["group"]) - set(groups))
    lines = ["| variant | " + " | ".join(groups) + " |", "| --- |" + " --- |" * len(groups)]
    for variant in summary["variant"].drop_duplicates():
        rows = summary[summary["variant"] == variant].set_index("group")
        cells = [f"{r['rate']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}] n={int(r['n'])}"
                 if g in rows.index and pd.notna((r := rows.loc[g])["rate"]) else "–" for g in groups]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def model_card(*, adapter_dir, summary_csv, figures: list[str], experiment: str, base_model: str,
               license: str) -> str:
    figure_lines = "\n\n".join(f"![{Path(f).stem.replace('_', ' ')}]({Path(f).name})" for f in figures)
    return (
        _front_matter(base_model=base_model, license=license, experiment=experiment)
        + "\n" + _card_body(Path(adapter_dir), experiment)
        + f"\n## Evaluation\n\nCorrect rate on the held-out test split, 95% Wilson interval, per variant "
          f"(base model, adapter, GGUF exports) and prompt group.\n\n{eval_table(summary_csv)}\n"
        + f"\n## Training curves\n\n{figure_lines}\n"
        + f"\n## License\n\nThis adapter is released under `{license}`; the base model "
          f"`{hub_base_model(base_model)}` keeps its own license.\n"
    )


def build_publish_folder(adapter_dir, summary_csv, figures: list, out_dir, *, experiment: str, base_model: str,
                         license: str = "apache-2.0") -> Path:
    """Write ``out_dir`` (atomically): adapter weights and config, the model card and the figures."""
    adapter_dir = Path(adapter_dir)
    missing = [f for f in ADAPTER_FILES if not (adapter_dir / f).is_file()]
    if missing:
        raise RuleboundError(f"{adapter_dir} lacks {', '.join(missing)}; is it a PEFT adapter folder from train_orpo?")
    with atomic_path(out_dir, is_dir=True) as tmp:
        for name in ADAPTER_FILES:
            shutil.copy2(adapter_dir / name, tmp / name)
        for figure in map(Path, figures):
            shutil.copy2(figure, tmp / figure.name)
        card = model_card(adapter_dir=adapter_dir, summary_csv=summary_csv, figures=figures, experiment=experiment,
                          base_model=base_model, license=license)
        (tmp / "README.md").write_text(card, encoding="utf-8")
    log.info("wrote %s: %s", out_dir, ", ".join(sorted(p.name for p in Path(out_dir).iterdir())))
    return Path(out_dir)


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def push_folder(folder, repo_id: str, *, token: str, private: bool = True, endpoint: str | None = None) -> str:
    """Create the model repo if needed and upload ``folder``; return the commit URL.

    Any failure (offline, refused, unauthorized) becomes one RuleboundError whose message holds no token;
    the original exception is not chained, since its text and traceback could carry it.
    """
    from huggingface_hub import HfApi

    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
    where = endpoint or "https://huggingface.co"
    try:
        api = HfApi(endpoint=endpoint, token=token)
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                   ignore_patterns=[".*"],  # Snakemake's .snakemake_timestamp marker
                                   commit_message="Upload adapter from the rulebound pipeline")
    except Exception as exc:  # noqa: BLE001 - every failure gets the same scrubbed, actionable message
        reason = _scrub(f"{type(exc).__name__}: {exc}", token)
        error = RuleboundError(
            f"Could not push {folder} to {repo_id} on {where} ({reason[:500]}). The folder is complete; check "
            "the network (HF_HUB_OFFLINE, HF_ENDPOINT) and that HF_TOKEN has write access to that repo, then "
            "rerun the publish rule."
        )
    else:
        url = str(getattr(commit, "commit_url", commit))
        log.info("pushed %s to %s (%s)", folder, repo_id, url)
        return url
    raise error  # outside the except block: no chained exception in the traceback


def publish(folder, *, experiment: str, settings: dict, environ=None) -> str | None:
    """Push ``folder`` to ``settings['repo_id']`` with HF_TOKEN; the commit URL, or None when no repo is set.

    A repo without a token is an error (one message, the folder untouched): the push was asked for.
    """
    environ = os.environ if environ is None else environ
    repo_id, token = settings.get("repo_id"), environ.get("HF_TOKEN")
    if not repo_id:
        log.info("%s: not pushing %s: experiments.%s.publish.repo_id is not set", experiment, folder, experiment)
        return None
    if not token:
        raise RuleboundError(f"{experiment}: cannot push {folder} to {repo_id}: HF_TOKEN is not set in the "
                             "environment. Export a write token (HF_TOKEN=hf_...) and run `snakemake publish` again; "
                             f"the folder is complete and can also be uploaded by hand (hf upload {repo_id} {folder}).")
    return push_folder(folder, repo_id, token=token, private=settings.get("private", True))


def publish_all(folders: list, settings: dict[str, dict], environ=None) -> dict[str, str | None]:
    """``publish`` every ``results/{experiment}/publish`` folder; a failure is logged (scrubbed) and re-raised."""
    pushed = {}
    for folder in folders:
        experiment = Path(folder).parent.name
        try:
            pushed[experiment] = publish(folder, experiment=experiment, settings=settings[experiment], environ=environ)
        except RuleboundError as exc:
            log.error("%s", exc)
            raise
    return pushed
