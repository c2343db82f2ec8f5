"""KL divergence and top-token agreement of each quant GGUF against the F16 GGUF (rule quant_fidelity)."""

from rulebound.export.fidelity import plot_fidelity, write_fidelity
from rulebound.io import setup_logging

setup_logging(snakemake.log[0])
settings = snakemake.params.settings
write_fidelity(
    snakemake.input.test,
    snakemake.input.reference,
    {q: snakemake.input[q] for q in snakemake.params.quants},
    snakemake.output.csv,
    max_texts=settings["max_texts"],
    n_ctx=settings["n_ctx"],
    threads=snakemake.threads,
)
plot_fidelity(snakemake.output.csv, snakemake.output.png)
