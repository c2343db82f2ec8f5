"""Checks on a Slurm run before its first job: the profile's variables are set, and Slurm knows its account and partitions.

profiles/slurm-a100 takes the account and the partitions from the environment (`$RULEBOUND_SLURM_ACCOUNT`, ...).
Snakemake leaves an unset variable as its literal text, which Slurm would receive; and a wrong account or
partition otherwise surfaces as a failed submission per job, retried, with the message buried in the sbatch call.
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping

from rulebound.errors import ConfigError

VARIABLE = re.compile(r"\$\{?([A-Za-z_]\w*)\}?")
PLAIN_NAME = re.compile(r"^[\w.+-]+$")
EXPORT_HINT = ("export RULEBOUND_SLURM_ACCOUNT=<your account> RULEBOUND_GPU_PARTITION=<GPU partition> "
               "RULEBOUND_CPU_PARTITION=<CPU partition>")


def unset_variables(resources: Iterable[tuple[str, object]],
                    environ: Mapping[str, str] = os.environ) -> dict[str, set[str]]:
    """{variable: resource names} for every `$VAR` in a resource value whose variable is not set."""
    unset: dict[str, set[str]] = {}
    for name, raw in resources:
        for var in VARIABLE.findall(str(raw)):
            if var not in environ:
                unset.setdefault(var, set()).add(name)
    return unset


def check_variables(resources: Iterable[tuple[str, object]], environ: Mapping[str, str] = os.environ) -> None:
    unset = unset_variables(resources, environ)
    if unset:
        named = "; ".join(f"{var} (resource {', '.join(sorted(names))})" for var, names in sorted(unset.items()))
        raise ConfigError(
            f"The profile takes resources from environment variables that are not set: {named}. Export them "
            f"before running Snakemake, e.g. `{EXPORT_HINT}` (`sacctmgr show assoc user=$USER format=account` "
            "lists your accounts, `sinfo -s` the partitions). On a cluster without accounts, set "
            "RULEBOUND_SLURM_ACCOUNT to an empty value: jobs are then submitted without an account."
        )


def _listing(cmd: list[str]) -> set[str] | None:
    """The lines a Slurm client prints, or None when the client is missing or fails (the executor reports it)."""
    if not shutil.which(cmd[0]):
        return None
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    return {line.strip().rstrip("*") for line in proc.stdout.splitlines() if line.strip()}


def _requested(resources: Iterable[tuple[str, object]], key: str) -> set[str]:
    """The plain values of one resource, expanded as Snakemake expands them; expressions are skipped."""
    values = set()
    for name, raw in resources:
        value = os.path.expandvars(str(raw)).strip() if name == key and raw is not None else ""
        if value and PLAIN_NAME.match(value):
            values.add(value)
    return values


def _source(value: str, environ: Mapping[str, str]) -> str:
    """Which variable to change: the RULEBOUND_* one holding this value (Snakemake expands the profile's
    `$VAR` when it loads it, so the resource itself no longer says)."""
    names = sorted(k for k, v in environ.items() if k.startswith("RULEBOUND_") and v == value)
    return " or ".join(names) or "the profile's value"


def check_cluster(resources: Iterable[tuple[str, object]], environ: Mapping[str, str] = os.environ) -> None:
    """Raise ConfigError when Slurm has no such partition, or the account is not one of the user's."""
    resources = list(resources)
    partitions = _requested(resources, "slurm_partition")
    known = _listing(["sinfo", "-h", "-o", "%R"])
    if partitions and known:
        for value in sorted(partitions - known):
            raise ConfigError(
                f"Slurm has no partition '{value}'; this cluster's partitions are {', '.join(sorted(known))}. "
                f"Set {_source(value, environ)} to one of them (`sinfo -s` shows what each holds).")
    accounts = _requested(resources, "slurm_account")
    user = getpass.getuser()
    mine = _listing(["sacctmgr", "-n", "-P", "show", "assoc", f"user={user}", "format=account"])
    if accounts and mine:  # an empty listing: a cluster without accounting, nothing to check against
        for value in sorted(accounts):
            if value.lower() not in {a.lower() for a in mine}:
                raise ConfigError(
                    f"Slurm refuses account '{value}': user {user} may submit only with {', '.join(sorted(mine))}. "
                    f"Set {_source(value, environ)} to one of them "
                    "(`sacctmgr show assoc user=$USER format=account,partition`).")
