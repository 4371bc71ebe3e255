"""The registry of loaders: which one a version needs, decided before any file is read.

A loader is chosen from the manifest alone: the card's ``loader`` field when it names
one, else the file suffixes. The choice (and the pickle check) happens before a single
blob is downloaded, so a policy that forbids pickle refuses a ``.joblib`` version without
reading a byte of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._card import ModelVersion
from .._errors import ConfigurationError, PickleNotAllowedError, SourceError

__all__ = [
    "LoadOptions",
    "LoaderSpec",
    "choose_loader",
    "loader_names",
    "register_loader",
]


@dataclass(frozen=True)
class LoadOptions:
    """What the caller (never the model) decides about loading.

    Attributes:
        allow_pickle: Whether pickle-based loaders may run (from the trust policy).
        trusted_types: Fully qualified type names a skops file may contain beyond skops'
            own safe defaults, e.g. ``["sklearn.tree._tree.Tree"]``.
    """

    allow_pickle: bool = True
    trusted_types: tuple[str, ...] = ()


LoadFunction = Callable[[ModelVersion, Mapping[str, Path], LoadOptions], Any]


@dataclass(frozen=True)
class LoaderSpec:
    """One way of turning a version's files into a model.

    Attributes:
        name: What a card's ``loader`` field says (``"skops"``).
        suffixes: File suffixes that select this loader.
        pickle_based: Whether loading can run code from the file (refused unless allowed).
        extra: The ``modelshelf[...]`` extra that installs its library.
        load: Gets the manifest, ``{file path: local path}`` of the verified files, and the
            caller's options.
        many_files: Whether several matching files are one model (safetensors shards).
    """

    name: str
    suffixes: tuple[str, ...]
    pickle_based: bool
    extra: str | None
    load: LoadFunction
    many_files: bool = False
    order: int = field(default=100, compare=False)

    def files(self, manifest: ModelVersion) -> list[str]:
        """The version's files this loader reads."""
        return [f.path for f in manifest.files if f.path.lower().endswith(self.suffixes)]

    def check(self, manifest: ModelVersion, options: LoadOptions) -> None:
        """Refuse before any download: pickle not allowed, or the wrong number of files.

        Raises:
            PickleNotAllowedError: A pickle-based loader under a policy that forbids it.
            SourceError: No file, or several where one is expected.
        """
        if self.pickle_based and not options.allow_pickle:
            raise PickleNotAllowedError(
                f"{manifest.ref} needs the {self.name} loader, which unpickles (and can run "
                "code); the trust policy forbids pickle. Re-push the model as skops, ONNX or "
                "safetensors, or set allow_pickle in the trust policy (nothing was loaded)"
            )
        matched = self.files(manifest)
        if not matched or (len(matched) > 1 and not self.many_files):
            raise SourceError(
                f"{manifest.ref} holds {len(matched)} {'/'.join(self.suffixes)} files; the "
                f"{self.name} loader needs exactly one (use pull to get the files)"
            )


_LOADERS: dict[str, LoaderSpec] = {}


def register_loader(spec: LoaderSpec) -> LoaderSpec:
    """Add or replace a loader (by name)."""
    _LOADERS[spec.name] = spec
    return spec


def loader_names() -> list[str]:
    """Names of every registered loader."""
    return sorted(_LOADERS, key=lambda n: (_LOADERS[n].order, n))


def choose_loader(manifest: ModelVersion, options: LoadOptions) -> LoaderSpec:
    """The loader for a version, already checked against ``options``.

    Raises:
        SourceError: The card names an unknown loader, no loader fits the files, or several
            do (name one in the card's ``loader`` field).
        PickleNotAllowedError: The only fit unpickles and the policy forbids it.
    """
    named = manifest.card.loader
    if named is not None:
        spec = _LOADERS.get(named)
        if spec is None:
            raise SourceError(
                f"{manifest.ref}: the card names loader {named!r}; known loaders: "
                f"{', '.join(loader_names())}"
            )
        spec.check(manifest, options)
        return spec
    fits = [s for s in (_LOADERS[n] for n in loader_names()) if s.files(manifest)]
    if not fits:
        raise SourceError(
            f"{manifest.ref} holds no file a loader reads ({', '.join(loader_names())} by "
            "suffix); use pull to get the files, or pass loader= for another layout"
        )
    if len(fits) > 1:
        raise SourceError(
            f"{manifest.ref} holds files for several loaders ({', '.join(s.name for s in fits)});"
            " name one in the card's 'loader' field"
        )
    fits[0].check(manifest, options)
    return fits[0]


def missing_library(spec_name: str, extra: str, exc: ImportError) -> ConfigurationError:
    """The error for a loader whose optional library is not installed."""
    return ConfigurationError(
        f"the {spec_name} loader needs {exc.name or extra}: pip install 'modelshelf[{extra}]'"
    )
