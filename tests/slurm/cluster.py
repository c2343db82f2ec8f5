"""A throwaway Slurm cluster on localhost (Debian's slurm-wlm 22.05): munge, MariaDB, slurmdbd, slurmctld, slurmd.

Everything lives in one temporary directory (configs, state, sockets, logs, the database) and every daemon
runs in the foreground as a child of this process, so `stop()` kills exactly what `start()` began and removes
the directory. Clients (sbatch, squeue, sacct, sacctmgr, srun inside jobs) find the cluster through
`SLURM_CONF`, which `env()` returns; nothing is written to /etc.

The node declares the resources `profiles/slurm-a100` asks for (8 CPUs and one A100 per GPU job, up to 192 GB
on the third attempt; room for two GPU jobs) with `SlurmdParameters=config_overrides`, so Slurm schedules the users' profile
unchanged on a small machine. The GPU is a generic resource backed by a dummy device file: no GPU
exists and training takes its CPU path.

Needs root on Linux. Standalone use (keeps the cluster up until Enter):

    python tests/slurm/cluster.py
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APT_PACKAGES = ("slurm-wlm", "slurmdbd", "mariadb-server", "munge")
BINARIES = ("munged", "mariadbd", "mariadb-install-db", "mariadb", "slurmdbd", "slurmctld", "slurmd", "sbatch",
            "sacct", "sacctmgr", "squeue", "scontrol", "scancel", "srun")
CLUSTER = "rulebound"
ACCOUNT = "rulebound"
PARTITIONS = ("cpu", "gpu")
# profiles/slurm-a100 asks for 8 CPUs and one A100 per GPU job and up to 64000 MB x 3 attempts. The node
# holds two such GPU jobs and CPU jobs beside them, so one GPU job never waits on another's Python start-up.
NODE_CPUS = 24
NODE_MEMORY_MB = 200_000
GPU_TYPE = "a100"
NODE_GPUS = 2
DB_PASSWORD = "rulebound-test"
# The executor's job step drops SLURM_CONF before it calls srun inside the job, so srun looks where Slurm
# looks by default. While the cluster runs, this path links to its config; stop() removes the link.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")


class ClusterError(RuntimeError):
    """A daemon did not start or a setup step failed; the message carries the daemon's log."""


def require_root_linux() -> None:
    if not sys.platform.startswith("linux"):
        raise ClusterError(f"the test Slurm cluster needs Linux (this is {sys.platform})")
    if os.geteuid() != 0:
        raise ClusterError("the test Slurm cluster needs root: it starts munged, MariaDB and the Slurm daemons "
                           "(run the suite as root, as CI does, e.g. in a Debian bookworm container)")


def install_packages() -> float:
    """apt-get the daemons when any is missing; returns the seconds spent (0 when already installed)."""
    if all(shutil.which(b) for b in BINARIES):
        return 0.0
    start = time.monotonic()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *APT_PACKAGES]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    missing = [b for b in BINARIES if not shutil.which(b)]
    if missing:
        raise ClusterError(f"after installing {' '.join(APT_PACKAGES)} these are still missing: {missing}")
    return time.monotonic() - start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """start() -> a running one-node cluster with partitions cpu and gpu; stop() -> nothing left behind."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self.host = socket.gethostname().split(".")[0]
        self.timings: dict[str, float] = {}

    # --- public -----------------------------------------------------------------------------------------

    def _conf(self) -> Path:
        assert self.root is not None, "cluster not started"
        return self.root / "etc" / "slurm.conf"

    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self._conf())}

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **self.env()))
        if check and proc.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
        return proc

    def start(self) -> "SlurmCluster":
        require_root_linux()
        self.timings["apt_install_s"] = install_packages()
        began = time.monotonic()
        self.root = Path(tempfile.mkdtemp(prefix="rulebound-slurm-"))
        try:
            self._write_configs()
            self._link_system_conf()
            self._start_munge()
            self._start_mariadb()
            self._start("slurmdbd", ["slurmdbd", "-D"], ready=self._dbd_ready, timeout=60)
            self.run("sacctmgr", "-i", "add", "cluster", CLUSTER)
            self.run("sacctmgr", "-i", "add", "account", ACCOUNT, f"cluster={CLUSTER}",
                     "description=rulebound tests", "organization=rulebound")
            self.run("sacctmgr", "-i", "add", "user", "root", f"account={ACCOUNT}", f"cluster={CLUSTER}")
            self._start("slurmctld", ["slurmctld", "-D", "-i"], ready=self._ctld_ready, timeout=60)
            self._start("slurmd", ["slurmd", "-D", "-N", self.host], ready=self._node_idle, timeout=90)
        except BaseException:
            self.stop()
            raise
        self.timings["start_s"] = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Cancel every job, stop the daemons (newest first), remove the directory."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--quiet", "-u", "root", check=False)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.run("squeue", "-h", check=False).stdout.strip():
                time.sleep(1)
        for name in reversed(list(self.procs)):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._kill_stray_stepds()
        if self.root is not None and SYSTEM_CONF.is_symlink() and Path(os.readlink(SYSTEM_CONF)) == self._conf():
            SYSTEM_CONF.unlink()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def __enter__(self) -> "SlurmCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- configuration -------------------------------------------------------------------------------

    def _write_configs(self) -> None:
        r = self.root
        for sub in ("etc", "state", "spool", "log", "run", "munge", "db"):
            (r / sub).mkdir()
        self.ports = {name: free_port() for name in ("slurmctld", "slurmd", "slurmdbd", "mariadb")}
        for i in range(NODE_GPUS):  # a GRES needs device files; nothing ever opens them
            (r / "run" / f"fake-gpu{i}").touch()
        munge_socket = r / "munge" / "munge.socket"
        (r / "etc" / "slurm.conf").write_text(f"""\
ClusterName={CLUSTER}
SlurmctldHost={self.host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={self.ports['slurmctld']}
SlurmdPort={self.ports['slurmd']}
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool/%n
SlurmctldPidFile={r}/run/slurmctld.pid
SlurmdPidFile={r}/run/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={self.ports['slurmdbd']}
AccountingStoragePass={munge_socket}
AccountingStorageEnforce=associations
AccountingStorageTRES=gres/gpu,gres/gpu:{GPU_TYPE}
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=5
InactiveLimit=0
# A job over its time limit gets SIGTERM at once (no grace minutes) and SIGKILL 2 s later: the
# time-limit test (tests/test_slurm.py) waits for one.
OverTimeLimit=0
KillWait=2
MinJobAge=600
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} RealMemory={NODE_MEMORY_MB} Gres=gpu:{GPU_TYPE}:{NODE_GPUS} State=UNKNOWN
PartitionName=cpu Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={self.host} MaxTime=INFINITE State=UP
""")
        (r / "etc" / "gres.conf").write_text(f"NodeName={self.host} Name=gpu Type={GPU_TYPE} File={r}/run/fake-gpu[0-{NODE_GPUS - 1}]\n")
        (r / "etc" / "cgroup.conf").write_text("CgroupAutomount=no\nConstrainCores=no\nConstrainRAMSpace=no\n")
        dbd = r / "etc" / "slurmdbd.conf"
        dbd.write_text(f"""\
AuthType=auth/munge
AuthInfo=socket={munge_socket}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={self.ports['slurmdbd']}
SlurmUser=root
PidFile={r}/run/slurmdbd.pid
LogFile={r}/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.ports['mariadb']}
StorageUser=slurm
StoragePass={DB_PASSWORD}
StorageLoc=slurm_acct_db
""")
        dbd.chmod(0o600)  # slurmdbd refuses a config that others can read

    def _link_system_conf(self) -> None:
        if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
            raise ClusterError(f"{SYSTEM_CONF} exists: this machine has a Slurm configuration of its own, which the "
                               "test cluster will not replace (run the test on a machine without one, e.g. CI's)")
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self._conf())

    # --- daemons ---------------------------------------------------------------------------------------

    def _start(self, name: str, cmd: list[str], ready, timeout: float) -> None:
        log = open(self.root / "log" / f"{name}.out", "w")
        began = time.monotonic()
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=dict(os.environ, **self.env()), start_new_session=True)
        log.close()
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise ClusterError(f"{name} exited with {self.procs[name].returncode}:\n{self._logs(name)}")
            if ready():
                self.timings[f"{name}_s"] = time.monotonic() - began
                return
            time.sleep(0.5)
        raise ClusterError(f"{name} not ready after {timeout:.0f} s:\n{self._logs(name)}")

    def _logs(self, name: str) -> str:
        texts = []
        for path in sorted((self.root / "log").glob(f"{name}*")):
            texts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(texts) or "(no log)"

    def _start_munge(self) -> None:
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        (self.root / "munge").chmod(0o700)
        sock = self.root / "munge" / "munge.socket"
        self._start("munged", ["munged", "-F", "--force", f"--key-file={key}", f"--socket={sock}",
                               f"--pid-file={self.root}/run/munged.pid", f"--log-file={self.root}/log/munged.log",
                               f"--seed-file={self.root}/munge/munge.seed"],
                    ready=sock.exists, timeout=20)

    def _start_mariadb(self) -> None:
        datadir, sock = self.root / "db", self.root / "run" / "mariadb.sock"
        proc = subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root",
                               "--auth-root-authentication-method=socket", "--skip-test-db"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise ClusterError(f"mariadb-install-db failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        self.mariadb_socket = sock
        self._start("mariadb", ["mariadbd", "--no-defaults", f"--datadir={datadir}", f"--socket={sock}",
                                f"--port={self.ports['mariadb']}", "--bind-address=127.0.0.1", "--user=root",
                                f"--pid-file={self.root}/run/mariadb.pid", f"--log-error={self.root}/log/mariadb.log",
                                "--innodb-buffer-pool-size=64M", "--skip-name-resolve"],
                    ready=self._mariadb_ready, timeout=60)
        sql = (f"CREATE DATABASE slurm_acct_db; CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}'; "
               "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;")
        self._sql(sql, check=True)

    def _sql(self, sql: str, check: bool = False) -> subprocess.CompletedProcess:
        proc = subprocess.run(["mariadb", "--no-defaults", f"--socket={self.mariadb_socket}", "-uroot", "-e", sql],
                              capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise ClusterError(f"SQL failed: {sql}\n{proc.stderr}\n{self._logs('mariadb')}")
        return proc

    def _mariadb_ready(self) -> bool:
        return self.mariadb_socket.exists() and self._sql("SELECT 1").returncode == 0

    def _dbd_ready(self) -> bool:
        return self.run("sacctmgr", "-n", "list", "cluster", check=False).returncode == 0

    def _ctld_ready(self) -> bool:
        return self.run("scontrol", "ping", check=False).stdout.count("UP") > 0

    def _node_idle(self) -> bool:
        state = self.run("sinfo", "-h", "-N", "-o", "%T", check=False).stdout.split()
        return bool(state) and all(s.startswith("idle") for s in state)

    def _kill_stray_stepds(self) -> None:
        """slurmstepd daemonizes away from slurmd; end the ones that still run from this cluster's config."""
        if self.root is None:
            return
        for proc_dir in Path("/proc").iterdir():
            if not proc_dir.name.isdigit():
                continue
            try:
                cmdline = (proc_dir / "cmdline").read_bytes().split(b"\0")
                environ = (proc_dir / "environ").read_bytes()
            except OSError:
                continue
            if cmdline and cmdline[0].endswith(b"slurmstepd") and str(self.root).encode() in environ:
                try:
                    os.kill(int(proc_dir.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass


def main() -> None:
    cluster = SlurmCluster()
    try:
        cluster.start()
        print(f"cluster up in {cluster.timings}; export SLURM_CONF={cluster.env()['SLURM_CONF']}")
        print(cluster.run("sinfo").stdout)
        input("Enter stops the cluster... ")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
