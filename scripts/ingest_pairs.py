"""Preference pairs from data.source (hf:, builtin: or a file), checked and split (rule ingest_pairs)."""

from rulebound.ingest import describe_report
from rulebound.io import setup_logging, write_parquet
from rulebound.tasks import ingest_raw

log = setup_logging(snakemake.log[0])
raw, report = ingest_raw(snakemake.params.task, snakemake.params.data)
log.info("%s", describe_report(report))
log.info("%d rows: %s", len(raw), raw.groupby(["split", "category"]).size().to_dict())
write_parquet(raw, snakemake.output.raw)
