"""A real one-node SLURM cluster on localhost for the scheduler test (tests/test_slurm.py).

Everything lives in one temp dir: slurm.conf (written here), state, spool, logs, pid files and, when no munge
daemon answers already, a private munged. CPUs only, no accounting database (sacct is not available; status
comes from squeue/scontrol and the run folders). ``python tests/slurm_cluster.py DIR`` starts one by hand and
prints the SLURM_CONF to export.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "munged", "munge")


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path("/usr/sbin", b).exists()]


def _which(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _munge_answers(env: dict) -> bool:
    enc = subprocess.run([_which("munge"), "-n"], capture_output=True, env=env)
    if enc.returncode != 0:
        return False
    return subprocess.run([_which("unmunge")], input=enc.stdout, capture_output=True, env=env).returncode == 0


class LocalSlurm:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.host = socket.gethostname().split(".")[0]
        self.procs: list[subprocess.Popen] = []
        self.conf = self.root / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def write_conf(self) -> None:
        r = self.root
        for d in ("state", "spool", "log"):
            (r / d).mkdir(parents=True, exist_ok=True)
        cpus = os.cpu_count() or 1
        lines = [
            "ClusterName=gmaetest", f"SlurmctldHost={self.host}(127.0.0.1)",
            "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge", "CredType=cred/munge",
            # a requeued job waits cred_expire + 1 s before it may start again (default 120 s: too long here)
            "AuthInfo=cred_expire=10",
            f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
            f"StateSaveLocation={r / 'state'}", f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}", f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}", f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            # no cgroups in a container: track processes by parent pid, bind nothing
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
            # one CPU per job, so two jobs share the 2-core machine; the node's hardware is not checked
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU", "SlurmdParameters=config_overrides",
            # schedule every second (default 60 s): a requeued job starts as soon as its begin time passes
            "SchedulerType=sched/builtin", "SchedulerParameters=sched_interval=1",
            "JobRequeue=1", "ReturnToService=2", "KillWait=10",
            "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none",
            "JobAcctGatherType=jobacct_gather/none", "InactiveLimit=0", "MinJobAge=600",
            f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _start_munge(self) -> None:
        if _munge_answers(self.env):
            return  # a munged is already running (the system's): use it
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            keygen = shutil.which("mungekey") or "/usr/sbin/mungekey"
            subprocess.run([keygen, "--create", f"--keyfile={key}"], check=True)
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        # --force: munged refuses to run as root or with a shared /run otherwise
        subprocess.run([_which("munged"), "--force"], check=True, env=self.env)
        self.started_munge = True
        deadline = time.time() + 10
        while not _munge_answers(self.env):
            if time.time() > deadline:
                raise RuntimeError("munged started but does not answer")
            time.sleep(0.1)

    def start(self, timeout: float = 60) -> None:
        self.started_munge = False
        self.write_conf()
        self._start_munge()
        log = open(self.root / "log" / "daemons.out", "ab")
        self.procs.append(subprocess.Popen([_which("slurmctld"), "-D", "-c", "-i", "-f", str(self.conf)],
                                           env=self.env, stdout=log, stderr=log))
        self.procs.append(subprocess.Popen([_which("slurmd"), "-D", "-f", str(self.conf), "-N", self.host],
                                           env=self.env, stdout=log, stderr=log))
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env)
            if out.returncode == 0 and out.stdout.strip() in ("idle", "mixed", "allocated"):
                return
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a SLURM daemon exited ({p.args[0]}, code {p.returncode}); "
                                       f"see {self.root / 'log'}")
            time.sleep(0.3)
        raise RuntimeError(f"the local SLURM node did not become idle in {timeout} s; see {self.root / 'log'}")

    def stop(self) -> None:
        subprocess.run(["scancel", "--full", "--user", "root"], capture_output=True, env=self.env)
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()
        if getattr(self, "started_munge", False):
            pid = Path("/run/munge/munged.pid")
            if pid.exists():
                try:
                    os.kill(int(pid.read_text().strip()), 15)
                except (ProcessLookupError, ValueError):
                    pass  # munged already gone, or its pid file half-written: nothing left to stop


if __name__ == "__main__":  # pragma: no cover - manual use
    c = LocalSlurm(Path(sys.argv[1]))
    c.start()
    print(f"export SLURM_CONF={c.conf}   # daemons: {[p.pid for p in c.procs]}")
