"""The model card and the version manifest that commits it.

The card follows the classic model-card layout (name, version, description, dates, author,
framework, algorithm, hyperparameters, training data, performance, schemas, limitations).
Every field is optional except what the registry fills in itself; unknown fields are kept so
teams can carry their own metadata. JSON is written with sorted keys so a card's bytes, and
therefore its digest, depend only on its content.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ._errors import InvalidCardError, validation_message

__all__ = [
    "FileEntry",
    "ModelCard",
    "ModelVersion",
    "Performance",
    "TrainingData",
    "canonical_json",
    "card_from_input",
    "utcnow",
]


def utcnow() -> datetime:
    """Now, in UTC, to the microsecond."""
    return datetime.now(UTC)


def canonical_json(data: Any) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace variance, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class TrainingData(BaseModel):
    """Where the training data came from."""

    model_config = ConfigDict(extra="allow")

    source: str | None = None
    samples: int | None = Field(default=None, ge=0)
    features: list[str] | int | None = None
    date_collected: str | None = None


class Performance(BaseModel):
    """Offline evaluation figures."""

    model_config = ConfigDict(extra="allow")

    accuracy: float | None = Field(default=None, ge=0, le=1)
    precision: float | None = Field(default=None, ge=0, le=1)
    recall: float | None = Field(default=None, ge=0, le=1)
    f1_score: float | None = Field(default=None, ge=0, le=1)
    latency_ms: float | None = Field(default=None, ge=0)


class ModelCard(BaseModel):
    """What a model is, how it was trained, and what it expects.

    ``name``, ``version``, ``created_at`` and ``updated_at`` are filled in by the registry on
    push; a card that sets ``name`` or ``version`` must agree with the push. ``loader``
    names the loader ``load`` and servers use (``skops``, ``onnx``, ``safetensors``,
    ``joblib``) when the file suffixes alone do not decide it.
    """

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    version: str | None = None
    description: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    author: str | None = None
    framework: str | None = None
    loader: str | None = None
    algorithm: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    training_data: TrainingData | None = None
    performance: Performance | None = None
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    limitations: list[str] = Field(default_factory=list)

    @field_validator("limitations", mode="before")
    @classmethod
    def _one_limitation(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def content_digest(self) -> str:
        """sha256 of the card without the fields the registry fills in (for idempotent pushes)."""
        data = self.model_dump(mode="json", exclude={"name", "version", "created_at", "updated_at"})
        return hashlib.sha256(canonical_json(data)).hexdigest()


def card_from_input(card: ModelCard | dict[str, Any] | None) -> ModelCard:
    """Validate a card given as a model, a mapping or nothing.

    Raises:
        InvalidCardError: Naming each field that failed and why.
    """
    if card is None:
        return ModelCard()
    if isinstance(card, ModelCard):
        return card.model_copy(deep=True)
    if not isinstance(card, dict):
        raise InvalidCardError(
            f"a model card must be a ModelCard or a mapping, not {type(card).__name__}"
        )
    try:
        return ModelCard.model_validate(card)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'card'}: {validation_message(err)}"
            for err in exc.errors()
        )
        raise InvalidCardError(f"invalid model card: {problems}") from exc


class FileEntry(BaseModel):
    """One file of a version: where it goes, how big it is, and the digest that names its blob."""

    model_config = ConfigDict(frozen=True)

    path: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ModelVersion(BaseModel):
    """A committed version: the manifest stored at ``{model}/versions/{version}.json``."""

    model_config = ConfigDict(extra="allow")

    format: int = 1
    name: str
    version: str
    card: ModelCard
    files: list[FileEntry]
    created_at: datetime
    created_by: str
    schema_change_allowed: bool = False
    repaired_blobs: list[str] = Field(default_factory=list, exclude=True)
    """Digests of stored blobs the push that returned this found bad and replaced (never
    stored in the manifest)."""

    @property
    def ref(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"

    @property
    def size(self) -> int:
        """Total bytes of all files."""
        return sum(f.size for f in self.files)

    def files_digest(self) -> str:
        """sha256 over the (path, size, sha256) list: equal for equal contents."""
        rows = sorted((f.path, f.size, f.sha256) for f in self.files)
        return hashlib.sha256(canonical_json(rows)).hexdigest()

    def to_json(self) -> bytes:
        """The manifest's canonical bytes."""
        return canonical_json(self.model_dump(mode="json"))
