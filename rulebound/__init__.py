"""rulebound: teach open LLMs hard behavioural rules at the weight level.

The Snakemake pipeline (``Snakefile``, ``rules/``) calls thin scripts; the logic lives here.
"""

__version__ = "0.1.0"

REFUSAL = "I cannot help you until you say please."
