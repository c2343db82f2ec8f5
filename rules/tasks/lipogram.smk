# The lipogram task's data: GRPO and held-out prompts, the base model's answers under constrained decoding
# (the constraint distilled into SFT data), the shipped e-free Q/A set and, optionally, filtered hub
# dialogues; and llama.cpp's grammar for the constraint, next to the exported GGUFs.
LIPOGRAM_EXPS = experiments_of("lipogram")


def lipogram_letter(wildcards):
    return exp_config(wildcards)["letter"]


rule build_lipogram_prompts:
    output:
        prompts="results/{experiment}/data/prompts.parquet",
        eval_prompts="results/{experiment}/data/eval_prompts.parquet",
    params:
        data=data_settings,
    wildcard_constraints:
        experiment=one_of(LIPOGRAM_EXPS),
    log:
        "logs/build_lipogram_prompts/{experiment}.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/build_lipogram_prompts.py"


rule distill_lipograms:
    input:
        prompts=rules.build_lipogram_prompts.output.prompts,
        model=base_model_dir,
    output:
        answers="results/{experiment}/data/constrained_answers.parquet",
    params:
        data=data_settings,
        letter=lipogram_letter,
    wildcard_constraints:
        experiment=one_of(LIPOGRAM_EXPS),
    resources:
        gpu=1,
    log:
        "logs/distill_lipograms/{experiment}.log",
    benchmark:
        "benchmarks/distill_lipograms/{experiment}.tsv"
    conda:
        "../../envs/train.yaml"
    script:
        "../../scripts/distill_lipograms.py"


rule build_sft_data:
    input:
        answers=rules.distill_lipograms.output.answers,
        eval_prompts=rules.build_lipogram_prompts.output.eval_prompts,
    output:
        sft="results/{experiment}/data/sft.parquet",
        card="results/{experiment}/data/card.md",
    params:
        data=data_settings,
        letter=lipogram_letter,
    wildcard_constraints:
        experiment=one_of(LIPOGRAM_EXPS),
    log:
        "logs/build_sft_data/{experiment}.log",
    conda:
        "../../envs/data.yaml"
    script:
        "../../scripts/build_sft_data.py"


rule lipogram_grammar:
    """llama.cpp's grammar for the constraint, for any llama.cpp front end on the exported GGUFs."""
    output:
        "results/{experiment}/gguf/{experiment}-no-{letter}.gbnf",
    wildcard_constraints:
        experiment=one_of(LIPOGRAM_EXPS),
        letter="[a-z]",
    log:
        "logs/lipogram_grammar/{experiment}-{letter}.log",
    run:
        from rulebound.io import write_text
        from rulebound.tasks.lipogram.constraint import letter_grammar

        write_text(letter_grammar(wildcards.letter), output[0])
