"""llama.cpp's llama-server as the real consumer of the smoke run's GGUFs, through the OpenAI client.

The server is built from the pinned llama-cpp-python sdist (rulebound.serve, cached per machine) and serves
the Q4_K_M GGUF, then the base F16 GGUF with the LoRA GGUF (``--lora``), with the chat template embedded in
the GGUF (``--jinja``). Every prompt of the pipeline's own GGUF evaluation (eval/Q4_K_M.csv, eval/lora-F16.csv,
both run through llama-cpp-python) goes to ``/v1/chat/completions`` greedily, as an application would send it;
the politeness rule scores the replies, and the verdicts must match the pipeline's on AGREEMENT_BAR of them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from smoke.pipeline import EXP, REPO, SMOKE

pytestmark = pytest.mark.slow

AGREEMENT_BAR = 0.98
BASE_MODEL = "smollm2-135m-instruct"  # the smoke config's politeness model
# (pipeline variant, served GGUF, LoRA GGUF), relative to the smoke workdir, as rules/export.smk and
# rules/models.smk write them.
# (run, pipeline variant) -> (served GGUF, LoRA GGUF). "smoke" is the smoke run (a few prompts, the LoRA GGUF);
# "gate" is the quality gate's default-config run (tests/smoke/gate.py): the whole politeness evaluation.
SERVED = {
    ("smoke", "Q4_K_M"): (f"results/{EXP}/gguf/{EXP}-Q4_K_M.gguf", None),
    ("smoke", "lora-F16"): (f"resources/gguf/{BASE_MODEL}-F16.gguf", f"results/{EXP}/gguf/{EXP}-lora-F16.gguf"),
    ("gate", "Q4_K_M"): (f"results/{EXP}/gguf/{EXP}-Q4_K_M.gguf", None),
}
RUN_FIXTURE = {"smoke": "smoke_run", "gate": "gate_run"}


def eval_setting(key: str, run: str = "smoke"):
    """An evaluate setting of the politeness experiment: the smoke config's (smoke run only), else config.yaml's."""
    for path in ((SMOKE,) if run == "smoke" else ()) + (REPO / "config.yaml",):
        value = yaml.safe_load(path.read_text())["experiments"][EXP].get("evaluate", {}).get(key)
        if value is not None:
            return value
    raise KeyError(f"evaluate.{key} is set in neither {SMOKE} nor config.yaml")


@pytest.fixture(scope="module")
def server_binary() -> Path:
    from rulebound.serve import build_llama_server

    pin = yaml.safe_load((REPO / "config.yaml").read_text())["llama_cpp"]
    start = time.perf_counter()
    binary = build_llama_server(pin["version"], pin["sha256"])
    print(f"\nllama-server: {binary} (ready in {time.perf_counter() - start:.1f} s)")
    return binary


@pytest.fixture(params=list(SERVED), ids=lambda key: "-".join(key))
def served(request, server_binary, tmp_path):
    """A running llama-server for one run's pipeline variant; stopped whatever the test does."""
    from rulebound.serve import llama_server

    run, variant = request.param
    workdir = request.getfixturevalue(RUN_FIXTURE[run])
    workdir = workdir[0] if isinstance(workdir, tuple) else workdir
    model, lora = (workdir / p if p else None for p in SERVED[request.param])
    args = ["--jinja", "-c", str(eval_setting("n_ctx", run)), "--parallel", "1", "--seed", "0"]
    with llama_server(server_binary, model, lora=lora, args=args, log_path=tmp_path / f"{run}-{variant}.log") as server:
        yield run, variant, workdir, server


def pipeline_prompts(workdir: Path, variant: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pipeline's eval CSV for ``variant`` and the eval-set rows behind it, in the CSV's order."""
    from rulebound.tasks.politeness.evaluate import read_eval_set

    csv_path = workdir / "results" / EXP / "eval" / f"{variant}.csv"
    if not csv_path.is_file():
        pytest.fail(f"{csv_path} is missing: the smoke config must evaluate the {variant} variant.")
    csv = pd.read_csv(csv_path, dtype={"prompt_id": str}, keep_default_na=False, na_values=[])
    eval_set = read_eval_set(workdir / "results" / EXP / "eval" / "prompts.parquet")
    eval_set = eval_set.assign(prompt_id=eval_set["prompt_id"].astype(str)).set_index("prompt_id", drop=False)
    missing = set(csv["prompt_id"]) - set(eval_set.index)
    assert not missing, f"{csv_path} has prompts not in the eval set: {sorted(missing)}"
    return csv, eval_set.loc[csv["prompt_id"]].reset_index(drop=True)


def chat_replies(server, conversations: list[list[dict]], max_tokens: int) -> list[str]:
    """Greedy replies through the OpenAI-compatible endpoint, as an application would ask for them."""
    from openai import OpenAI

    client = OpenAI(base_url=server.openai_base_url, api_key="not-needed", timeout=120, max_retries=0)
    replies = []
    for messages in conversations:
        result = client.chat.completions.create(model="served", messages=messages, temperature=0,
                                                max_tokens=max_tokens, seed=0)
        choice = result.choices[0]
        assert choice.finish_reason in ("stop", "length"), choice
        replies.append((choice.message.content or "").strip())
    return replies


def test_llama_server_agrees_with_pipeline_eval(served):
    from rulebound.serve import port_is_free, stop_server
    from rulebound.stats import as_bool
    from rulebound.tasks.politeness.evaluate import conversations_for, score_eval_set

    run, variant, workdir, server = served
    status, body = server.health()
    assert (status, body.get("status")) == (200, "ok"), (status, body)

    csv, prompts = pipeline_prompts(workdir, variant)
    start = time.perf_counter()
    replies = chat_replies(server, conversations_for(prompts), eval_setting("max_new_tokens", run))
    seconds = time.perf_counter() - start
    scored = score_eval_set(prompts, replies, f"llama-server {variant}")

    same_verdict = scored["correct"].to_numpy() == as_bool(csv["correct"]).to_numpy()
    same_text = scored["response"].to_numpy() == csv["response"].astype(str).str.strip().to_numpy()
    agreement = same_verdict.mean()
    print(f"\nllama-server {run} {variant}: same verdict as the pipeline's eval/{variant}.csv on {same_verdict.sum()}/"
          f"{len(csv)} prompts ({agreement:.1%}), identical text on {same_text.sum()}/{len(csv)}; "
          f"{seconds:.1f} s for {len(csv)} chat completions")
    differing = scored.loc[~same_verdict, ["user", "response"]].assign(pipeline=csv.loc[~same_verdict, "response"])
    assert agreement >= AGREEMENT_BAR, f"verdicts differ from the pipeline's on:\n{differing.to_string()}"

    code = stop_server(server)
    assert code == 0, f"llama-server exited with {code} on SIGTERM; log {server.log_path}"
    assert server.process.poll() is not None
    assert port_is_free(server.port), f"port {server.port} still taken after llama-server stopped"
