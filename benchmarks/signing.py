"""Signing benchmark: an OMS signature of a 1 GiB version costs no re-hash of its files.

Pushes a version of ``--size-mib`` MiB (four files of random bytes) into a local-folder
registry, then signs it with ``Registry.sign`` and prints:

- the time signing takes, and the bytes this process read while signing (``rchar`` from
  ``/proc/self/io``: every ``read`` syscall, page-cache hits included);
- for scale: the time one sha256 pass over the same files takes (what a signer that
  re-hashes pays), and the time stock ``model_signing sign key`` takes on the pulled folder;
- the time a trusted ``get`` (read manifest + verify the signature) adds to a load.

Target: signing reads less than 1 MiB (nothing of the files; the manifest already holds
their sha256). Exit status 1 when it does not.

    python benchmarks/signing.py [--size-mib 1024] [--dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from modelshelf import Registry
from modelshelf._trust import TrustedKey, TrustPolicy, new_key_pair

TARGET_READ_BYTES = 1024 * 1024
_CHUNK = 8 * 1024 * 1024


def _rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/self/io")


def _make_files(folder: Path, size_mib: int, parts: int = 4) -> None:
    folder.mkdir(parents=True)
    per_part = size_mib * 1024 * 1024 // parts
    for index in range(parts):
        with open(folder / f"shard-{index}.bin", "wb") as out:
            left = per_part
            while left:
                chunk = os.urandom(min(_CHUNK, left))
                out.write(chunk)
                left -= len(chunk)


def _sha256_all(folder: Path) -> float:
    start = time.perf_counter()
    for path in sorted(folder.iterdir()):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: tmp)")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}"
    )

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="modelshelf-sign-") as tmp:
        root = Path(tmp)
        source = root / "source"
        _make_files(source, args.size_mib)
        registry = Registry(root / "registry", cache_dir=root / "cache", user="bench")
        manifest = registry.push("big", source)
        size = manifest.size
        pair = new_key_pair(root / "keys", "ci")
        print(f"version: {manifest.ref}, {len(manifest.files)} files, {size / 2**30:.2f} GiB")

        before, start = _rchar(), time.perf_counter()
        registry.sign(manifest.ref, pair.private_path)
        sign_seconds = time.perf_counter() - start
        sign_read = _rchar() - before

        policy = TrustPolicy(
            keys=[TrustedKey(name="ci", public_key=pair.public_path.read_text())],
            require_signature=True,  # type: ignore[arg-type]
        )
        trusted = Registry(registry.store, cache_dir=root / "cache", trust_policy=policy)
        before, start = _rchar(), time.perf_counter()
        trusted.trusted_manifest(manifest.ref, "load")
        verify_seconds = time.perf_counter() - start
        verify_read = _rchar() - before

        hash_seconds = _sha256_all(source)
        pulled = root / "pulled"
        trusted.pull(manifest.ref, pulled)
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "model_signing",
                "sign",
                "key",
                str(pulled),
                "--private_key",
                str(pair.private_path),
                "--signature",
                str(root / "stock.sig"),
            ],
            check=True,
            capture_output=True,
        )
        stock_seconds = time.perf_counter() - start

    print(
        f"sign {manifest.ref}:           {sign_seconds * 1000:8.1f} ms, read {sign_read:,} B "
        f"({sign_read / size:.2e} of the version)"
    )
    print(f"verify before a load:     {verify_seconds * 1000:8.1f} ms, read {verify_read:,} B")
    print(f"one sha256 pass (re-hash): {hash_seconds * 1000:8.1f} ms, read {size:,} B")
    print(f"stock model_signing sign: {stock_seconds * 1000:8.1f} ms (hashes every file)")
    print(f"signing / one re-hash:    {sign_seconds / hash_seconds:.4f}")
    met = sign_read < TARGET_READ_BYTES
    print(f"target: signing reads < {TARGET_READ_BYTES:,} B: {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
