"""Verify a pulled folder the way stock ``model_signing verify key`` does, offline.

Unlike everything else in this package this re-hashes files: a folder on disk carries no
manifest whose digests could be trusted instead.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .._errors import InvalidBundleError, SourceError, UntrustedVersionError
from ._dsse import parse_bundle
from ._policy import TrustedKey
from ._statement import SIGNATURE_FILE, signed_resources

__all__ = ["verify_folder"]

_IGNORED = frozenset({".git", ".gitattributes", ".github", ".gitignore"})
_CHUNK = 4 * 1024 * 1024


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_folder(
    folder: str | os.PathLike[str],
    keys: list[TrustedKey],
    *,
    signature: str | os.PathLike[str] | None = None,
) -> TrustedKey:
    """Check ``folder/model.sig`` against ``keys`` and every file in the folder.

    Returns:
        The key that signed it.

    Raises:
        SourceError: The folder or its signature file is missing.
        UntrustedVersionError: No listed key signed it, or a file differs, is missing or
            is not signed.
    """
    root = Path(folder)
    sig_path = Path(signature) if signature is not None else root / SIGNATURE_FILE
    try:
        data = sig_path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read the signature {sig_path}: {exc.strerror}") from exc
    try:
        bundle = parse_bundle(data, str(sig_path))
        statement = bundle.statement()
    except InvalidBundleError as exc:
        raise UntrustedVersionError(f"{root}: {exc}") from exc
    key = next((k for k in keys if bundle.verify(k.public())), None)
    if key is None:
        raise UntrustedVersionError(
            f"{sig_path} is not signed by any of: {', '.join(k.name for k in keys) or 'no keys'}"
        )
    try:
        signed = signed_resources(statement)
    except InvalidBundleError as exc:
        raise UntrustedVersionError(f"{sig_path}: {exc}") from exc
    found: dict[str, str] = {}
    skip = {sig_path.resolve()}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or path.resolve() in skip or rel.parts[0] in _IGNORED:
            continue
        found[rel.as_posix()] = _sha256(path)
    problems = [
        f"{p} differs from the signed file" for p in found if p in signed and found[p] != signed[p]
    ]
    problems += [f"{p} is missing" for p in signed if p not in found]
    problems += [f"{p} is not signed" for p in found if p not in signed]
    if problems:
        raise UntrustedVersionError(f"{root}: {'; '.join(sorted(problems)[:8])}")
    return key
