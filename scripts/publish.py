"""Push each experiment's hub folder where publish.repo_id and HF_TOKEN are set; log why not otherwise (rule publish)."""

from rulebound.io import setup_logging
from rulebound.export.publish import publish_all

setup_logging(snakemake.log[0])
publish_all(snakemake.input.folders, snakemake.params.settings)
