"""Raw preference rows of an experiment from its data.source, by its task (rule ingest_pairs)."""

from rulebound.ingest import describe_report
from rulebound.io import setup_logging, write_parquet
from rulebound.tasks import registry

log = setup_logging(snakemake.log[0])
raw, report = registry.get(snakemake.params.task).ingest(snakemake.params.data)
log.info("%s", describe_report(report))
log.info("%d rows: %s", len(raw), raw.groupby(["split", "category"]).size().to_dict())
write_parquet(raw, snakemake.output.raw)
