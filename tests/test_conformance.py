"""GGUF conformance: each check passes on a sound file and catches the fault it is for (broken template,
wrong EOS, leaked template tokens, run-on, a stale Modelfile), and a failing table never lands at the
declared output."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pandas as pd
import pytest

from rulebound.errors import RuleboundError
from rulebound.export.conformance import (
    CHECKS, EXTRA_CHATS, STOP_PROB, Generation, Target, check_conformance, compare_renderings, failed_path,
    generation_sample, greedy_reply, judge_generations, loop_period, parse_go_template, parse_modelfile,
    render_like_llama_cpp, score_run_ons, template_tokens, token_limit, write_conformance,
)
from rulebound.export.gguf import read_metadata
from rulebound.export.ollama import go_template, probe_chat_template, render_jinja, render_pieces, write_modelfile
from rulebound.models import embedded_gguf_path

CHATS = [[{"role": "user", "content": "Please say hi."}],
         [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Please name a colour."}],
         [{"role": "user", "content": "Please count to two."}, {"role": "assistant", "content": "One, two."},
          {"role": "user", "content": "Please say bye."}]]
TEMPLATE_IDS = {"<|im_start|>": 1, "<|im_end|>": 2}


# --------------------------------------------------------------------------- pure checks


def test_token_limit_is_generous_beside_the_evaluation():
    assert token_limit(None) == 1024 and token_limit(16) == 1024 and token_limit(300) == 1200


def test_generation_sample_spreads_over_the_evaluation_and_keeps_the_extra_chats():
    chats = [[{"role": "user", "content": f"q{i}"}] for i in range(100)] + list(EXTRA_CHATS)
    sample = generation_sample(chats, 10)
    assert [c[0]["content"] for c in sample[:10]] == [f"q{i}" for i in range(0, 100, 10)]
    assert sample[10:] == list(EXTRA_CHATS)
    assert generation_sample(chats, None) == chats and generation_sample(chats, 500) == chats


def test_loop_period_finds_a_repeating_tail_only():
    assert loop_period([7, 8, 9] * 20) == 3
    assert loop_period(list(range(100)) + [5, 6] * 30) == 2
    assert loop_period(list(range(200))) is None
    assert loop_period([1, 2] * 10) is None  # 20 tokens: under the span a loop must cover


def test_judge_generations_passes_stops_and_loops():
    replies = [Generation([10, 11], "Hi.", stop_token=2), Generation([5, 6] * 30, "la" * 60, None, loop_period=2)]
    result = judge_generations("f.gguf", CHATS[:2], replies, limit=256, template_ids=TEMPLATE_IDS)
    assert result["passed"] and result["check"] == "generation"
    assert "1 of 2" in result["detail"] and "repetition loop" in result["detail"]


@pytest.mark.parametrize("reply, needle", [
    (Generation([10, 2, 1, 12], "Hi.<|im_end|><|im_start|>user", stop_token=2), "template tokens"),  # run-on by id
    (Generation([10, 13], "Hi. <|im_start|>", stop_token=2), "template tokens"),  # spelt out as text
    (Generation(list(range(256)), "rambling on", stop_token=None), "ran to the 256-token limit"),
])
def test_judge_generations_catches_leaks_and_run_on(reply, needle):
    result = judge_generations("f.gguf", CHATS[:1], [reply], limit=256, template_ids=TEMPLATE_IDS)
    assert not result["passed"] and needle in result["detail"] and "Please say hi." in result["detail"]


def test_judge_generations_run_on_is_the_models_own_only_where_the_hf_model_would_not_stop():
    ramble = Generation(list(range(3, 259)), "rambling on", stop_token=None)
    stops = Generation([10, 11], "Hi.", stop_token=2)
    own = judge_generations("f.gguf", CHATS[:2], [stops, replace(ramble, reference_stop=0.04)], limit=256,
                            template_ids=TEMPLATE_IDS)
    assert own["passed"], own
    assert "1 of 2 greedy replies stopped" in own["detail"] and "1 ran on to the limit as the HF model does too" \
        in own["detail"] and "p 0.04" in own["detail"]
    fault = judge_generations("f.gguf", CHATS[:2], [stops, replace(ramble, reference_stop=0.97)], limit=256,
                              template_ids=TEMPLATE_IDS)
    assert not fault["passed"] and "ends its turn (p 0.97" in fault["detail"] and "Please name a colour." \
        in fault["detail"]
    edge = judge_generations("f.gguf", CHATS[:1], [replace(ramble, reference_stop=STOP_PROB)], limit=256,
                             template_ids=TEMPLATE_IDS)
    assert not edge["passed"]


def test_a_template_token_the_hf_model_emits_too_is_the_models_own():
    """A collapsed model that writes <|im_start|> itself (GRPO gaming a length penalty on the GPU run) is
    reported, not called an export fault; the same leak where the HF model would not emit it fails."""
    leak = Generation([10, 1, 12], "Hi<|im_start|>assistant", stop_token=2)
    own = judge_generations("f.gguf", CHATS[:1], [replace(leak, reference_leak=True)], limit=256,
                            template_ids=TEMPLATE_IDS)
    assert own["passed"] and "1 hold template tokens as the HF model does too" in own["detail"], own
    fault = judge_generations("f.gguf", CHATS[:1], [replace(leak, reference_leak=False)], limit=256,
                              template_ids=TEMPLATE_IDS)
    assert not fault["passed"] and "would not emit it" in fault["detail"]
    unscored = judge_generations("f.gguf", CHATS[:1], [leak], limit=256, template_ids=TEMPLATE_IDS)
    assert not unscored["passed"] and "would not emit it" not in unscored["detail"]


def test_compare_renderings_names_the_first_chat_that_differs():
    assert compare_renderings(CHATS, ["a", "b", "c"], ["a", "b", "c"])[0]
    passed, detail = compare_renderings(CHATS, ["a", "bX", "c"], ["a", "b", "c"])
    assert not passed and "1 of 3" in detail and "system/user" in detail and "Please name a colour." in detail


def smollm_template() -> str:
    return read_metadata(embedded_gguf_path("smollm2-135m-instruct"))["chat_template"]


def test_go_template_reads_back_into_its_pieces():
    pieces = probe_chat_template(smollm_template(), "<|im_end|>")
    parsed = parse_go_template(go_template(pieces))
    assert parsed is not None
    assert {k: v for k, v in vars(parsed).items() if k != "default_system"} == \
        {k: v for k, v in vars(pieces).items() if k != "default_system"}
    assert parse_go_template("{{ .Prompt }}") is None  # a hand-written template: not ours to read


def test_an_empty_system_message_renders_as_the_gguf_does_and_the_older_translation_is_caught():
    """ChatML renders an empty system message as an empty block; the older Modelfile (one block from
    ``{{ if .System }}``) dropped it, so 6 of truthy's 40 chats rendered differently on the GPU run."""
    from dataclasses import replace as dc_replace

    template = smollm_template()
    chat = [{"role": "system", "content": ""}, {"role": "user", "content": "How old are you?"}]
    expected = render_jinja(template, chat, eos="<|im_end|>")
    assert expected.startswith("<|im_start|>system\n<|im_end|>")
    pieces = probe_chat_template(template, "<|im_end|>")
    assert pieces.system_in_loop and render_pieces(pieces, chat) == expected
    old = dc_replace(pieces, system_in_loop=False)
    assert render_pieces(old, chat) != expected
    parsed = parse_go_template(go_template(old))  # still read back, so it can be called stale
    assert parsed is not None and not parsed.system_in_loop


def test_parse_modelfile():
    text = ('FROM ./base.gguf\nADAPTER ./lora.gguf\nTEMPLATE """{{ if .System }}x\n{{ end }}"""\n'
            'SYSTEM """Be kind."""\nPARAMETER stop "<|im_end|>"\nPARAMETER stop "<|endoftext|>"\n')
    assert parse_modelfile(text) == {"from": "./base.gguf", "adapter": "./lora.gguf",
                                     "template": "{{ if .System }}x\n{{ end }}", "system": "Be kind.",
                                     "stops": ["<|im_end|>", "<|endoftext|>"]}


def test_write_conformance_only_a_passing_table_lands_at_the_output(tmp_path):
    out = tmp_path / "eval" / "conformance.csv"
    good = pd.DataFrame([{"file": "a.gguf", "check": c, "passed": True, "detail": "ok"} for c in CHECKS])
    bad = good.copy()
    bad.loc[1, ["passed", "detail"]] = [False, "GGUF eos '<|endoftext|>' (id 0), HF eos '<|im_end|>' (id 2)"]
    with pytest.raises(RuleboundError) as exc:
        write_conformance(bad, out)
    message = str(exc.value)
    assert "a.gguf: eos_token failed" in message and "tokenizer_config.json" in message and "1 of 6" in message
    assert not out.exists() and len(pd.read_csv(failed_path(out))) == len(CHECKS)
    write_conformance(good, out)
    assert out.is_file() and not failed_path(out).exists()  # a stale failed table goes with the fix
    assert pd.read_csv(out)["passed"].all()


# --------------------------------------------------------------------------- on a real GGUF


@pytest.fixture(scope="module")
def sound_gguf(tmp_path_factory):
    """The embedded SmolLM2 GGUF and its Modelfile, side by side."""
    folder = tmp_path_factory.mktemp("gguf")
    gguf = folder / "smollm2-Q4_1.gguf"
    shutil.copyfile(embedded_gguf_path("smollm2-135m-instruct"), gguf)
    write_modelfile(gguf, folder / "smollm2-Q4_1.Modelfile")
    return Target(file=str(gguf), gguf=str(gguf), modelfile=str(folder / "smollm2-Q4_1.Modelfile"))


def altered_copy(target: Target, out, **metadata) -> Target:
    """A copy of the GGUF with some metadata replaced (gguf-py), the original's Modelfile beside it."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(target.gguf)
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = gguf.GGUFWriter(str(out), arch=arch, endianess=reader.endianess)
    types = {int: gguf.GGUFValueType.UINT32, str: gguf.GGUFValueType.STRING}
    new = {key: MetadataDetails(types[type(value)], value) for key, value in metadata.items()}
    copy_with_new_metadata(reader, writer, new, [])
    modelfile = out.with_suffix(".Modelfile")
    modelfile.write_text(open(target.modelfile).read().replace(f"FROM ./{target.gguf.rsplit('/', 1)[-1]}",
                                                               f"FROM ./{out.name}"))
    return Target(file=str(out), gguf=str(out), modelfile=str(modelfile))


def by_check(table: pd.DataFrame) -> dict:
    return {r.check: (bool(r.passed), r.detail) for r in table.itertuples()}


def test_sound_gguf_passes_every_check(sound_gguf, embedded_model_dir):
    table = check_conformance([sound_gguf], embedded_model_dir, CHATS[:1], limit=256)
    checks = by_check(table)
    assert list(checks) == list(CHECKS)
    assert all(passed for passed, _ in checks.values()), checks
    assert f"{1 + len(EXTRA_CHATS)} chats" in checks["chat_template"][1]


def test_greedy_reply_is_the_evaluations_reply(sound_gguf, embedded_model_dir):
    """The check decodes exactly as the GGUF evaluation (llama-cpp-python's chat completion) does."""
    from rulebound.generate import gguf_generate, open_gguf

    meta = read_metadata(sound_gguf.gguf)
    chats = CHATS[1:]
    expected = gguf_generate(sound_gguf.gguf, chats, max_new_tokens=12, n_ctx=512, threads=1)
    llm = open_gguf(sound_gguf.gguf, n_ctx=512, n_threads=1, n_threads_batch=1)
    prompts = render_like_llama_cpp(meta["chat_template"], chats, bos=meta["bos_token"], eos=meta["eos_token"])
    got = [greedy_reply(llm, p, limit=12).text.strip() for p in prompts]
    assert got == expected


def test_run_on_is_scored_by_the_hf_model(sound_gguf, embedded_model_dir):
    """A reply cut mid-answer (limit 6) is one the HF model would go on with: the model's own, it passes. The same
    chat's complete reply with its end token withheld is one the HF model ends right there: the file's fault."""
    from rulebound.generate import open_gguf

    meta = read_metadata(sound_gguf.gguf)
    prompt = render_like_llama_cpp(meta["chat_template"], CHATS[:1], bos=meta["bos_token"],
                                   eos=meta["eos_token"])[0]
    llm = open_gguf(sound_gguf.gguf, n_ctx=512, n_threads=2, n_threads_batch=2)
    cut, whole = greedy_reply(llm, prompt, limit=6), greedy_reply(llm, prompt, limit=256)
    llm.close()
    assert cut.stop_token is None and whole.stop_token is not None, (cut, whole)
    withheld = replace(whole, stop_token=None)
    unscored = Target(file=sound_gguf.file, gguf=sound_gguf.gguf)
    assert score_run_ons(unscored, [cut]) == [cut]  # no HF model named: left for the judge to fail
    target = replace(unscored, reference=str(embedded_model_dir))
    scored_cut, scored_whole = score_run_ons(target, [cut, withheld])
    assert scored_cut.reference_stop < STOP_PROB < scored_whole.reference_stop, (scored_cut, scored_whole)
    assert judge_generations(target.file, CHATS[:1], [scored_cut], limit=6, template_ids=TEMPLATE_IDS)["passed"]
    assert not judge_generations(target.file, CHATS[:1], [scored_whole], limit=256,
                                 template_ids=TEMPLATE_IDS)["passed"]


def test_leaks_are_scored_by_the_hf_model(sound_gguf, embedded_model_dir):
    """The HF model, fed the file's reply, is asked what it would emit where a template token stands: after its
    own complete turn and ``<|im_end|>\n`` it opens the next turn itself (its own <|im_start|>); in the middle of
    an answer it would not."""
    from rulebound.generate import open_gguf

    meta = read_metadata(sound_gguf.gguf)
    ids = template_tokens(meta)
    prompt = render_like_llama_cpp(meta["chat_template"], CHATS[:1], bos=meta["bos_token"], eos=meta["eos_token"])[0]
    llm = open_gguf(sound_gguf.gguf, n_ctx=512, n_threads=2, n_threads_batch=2)
    whole = greedy_reply(llm, prompt, limit=256)
    newline = llm.tokenize(b"\n", add_bos=False, special=False)
    llm.close()
    start, end = ids["<|im_start|>"], ids["<|im_end|>"]
    after_turn = replace(whole, tokens=[*whole.tokens, end, *newline, start], stop_token=None)
    mid_answer = replace(whole, tokens=[whole.tokens[0], start], stop_token=end)
    target = Target(file=sound_gguf.file, gguf=sound_gguf.gguf, reference=str(embedded_model_dir))
    scored_turn, scored_mid = score_run_ons(target, [after_turn, mid_answer], ids)
    assert scored_turn.reference_leak is True and scored_mid.reference_leak is False, (scored_turn, scored_mid)
    assert score_run_ons(replace(target, reference=None), [mid_answer], ids)[0].reference_leak is None


def test_broken_template_is_caught(sound_gguf, embedded_model_dir, tmp_path):
    broken = smollm_template().replace("'<|im_start|>' + message['role'] + '\n'", "'<|im_start|>' + message['role'] + ': '")
    assert broken != smollm_template()
    target = altered_copy(sound_gguf, tmp_path / "broken.gguf", **{"tokenizer.chat_template": broken})
    checks = by_check(check_conformance([target], embedded_model_dir, CHATS[:1], limit=256))
    assert not checks["chat_template"][0] and "render differently from the HF template" in checks["chat_template"][1]
    assert not checks["modelfile_template"][0]  # the Modelfile no longer formats chats like the file
    assert checks["eos_token"][0]


def test_wrong_eos_is_caught(sound_gguf, embedded_model_dir, tmp_path):
    target = altered_copy(sound_gguf, tmp_path / "wrong-eos.gguf", **{"tokenizer.ggml.eos_token_id": 0})
    checks = by_check(check_conformance([target], embedded_model_dir, CHATS[:1], limit=256))
    assert not checks["eos_token"][0] and "'<|endoftext|>' (id 0)" in checks["eos_token"][1]
    assert not checks["end_of_turn_token"][0] and "neither the GGUF's eos" in checks["end_of_turn_token"][1]
    assert not checks["modelfile_stop"][0] and "<|endoftext|>" in checks["modelfile_stop"][1]
    assert checks["chat_template"][0]


def test_missing_modelfile_and_wrong_from_are_caught(sound_gguf, embedded_model_dir, tmp_path):
    elsewhere = tmp_path / "other.Modelfile"
    elsewhere.write_text(open(sound_gguf.modelfile).read())  # FROM ./smollm2-Q4_1.gguf: not next to it
    target = Target(file=sound_gguf.file, gguf=sound_gguf.gguf, modelfile=str(elsewhere))
    checks = by_check(check_conformance([target], embedded_model_dir, CHATS[:1], limit=256))
    assert not checks["modelfile_template"][0] and "FROM" in checks["modelfile_template"][1]


# --------------------------------------------------------------------------- in the pipeline


def test_pipeline_checks_every_exported_gguf_and_reports_it(smoke_run):
    """The smoke run: a conformance table per exporting experiment, one row per exported file and check, all
    passed, and the report shows it."""
    exported = {"politeness": {"politeness-F16.gguf", "politeness-Q8_0.gguf", "politeness-Q4_K_M.gguf"},
                "truthy": {"truthy-F16.gguf", "truthy-Q4_K_M.gguf"}}
    for exp, files in exported.items():
        table = pd.read_csv(smoke_run / "results" / exp / "eval" / "conformance.csv")
        names = {f.rsplit("/", 1)[-1] for f in table["file"]}
        assert files <= names, (exp, names)
        assert table.groupby("file")["check"].apply(list).map(sorted).map(tuple).nunique() == 1
        assert set(table["check"]) == set(CHECKS)
        assert table["passed"].all(), table[~table["passed"]].to_dict("records")
    html = (smoke_run / "results" / "report.html").read_text()
    assert "GGUF conformance" in html
