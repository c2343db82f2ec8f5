"""A short data card: what the formatted splits hold, counted per split and category."""

from __future__ import annotations

import pandas as pd


def data_card(train: pd.DataFrame, test: pd.DataFrame, *, experiment: str, settings: dict,
              length_limit: dict | None = None) -> str:
    """``length_limit`` is ``format_preferences``' count of rows over the limits (``attrs["length_limit"]``)."""
    both = pd.concat([train.assign(split="train"), test.assign(split="test")], ignore_index=True)
    counts = both.pivot_table(index="category", columns="split", values="prompt", aggfunc="count", fill_value=0)
    counts = counts.reindex(columns=["train", "test"], fill_value=0)
    rows = "\n".join(f"| {cat} | {r.train} | {r.test} |" for cat, r in counts.iterrows())
    lengths = both.assign(chosen_chars=both["chosen"].str.len(), rejected_chars=both["rejected"].str.len())
    mean = lengths.groupby("split")[["chosen_chars", "rejected_chars"]].mean().round(0)
    shared = set(train.get("request_id", [])) & set(test.get("request_id", []))
    settings_lines = "\n".join(f"- `{k}`: {v}" for k, v in sorted(settings.items()))
    limit = length_limit or {}
    length_line = ""
    if limit.get("max_length"):
        done = "dropped" if limit["overlong"] == "drop" else "truncated"
        length_line = (f"\nLength limit: max_length {limit['max_length']} tokens, max_prompt_length "
                       f"{limit.get('max_prompt_length')}: {limit['affected']} of {limit['rows']} rows {done}.\n")
    return f"""# Data card: {experiment}

{len(train)} training and {len(test)} test preference pairs (prompt / chosen / rejected), chat template applied.
Requests shared between train and test: {len(shared)}.
{length_line}
| category | train | test |
| --- | ---: | ---: |
{rows}
| **all** | {len(train)} | {len(test)} |

Mean characters: chosen {mean.loc['train', 'chosen_chars']:.0f} (train) / {mean.loc['test', 'chosen_chars']:.0f} (test),
rejected {mean.loc['train', 'rejected_chars']:.0f} / {mean.loc['test', 'rejected_chars']:.0f}.

Generator settings:
{settings_lines}
"""
