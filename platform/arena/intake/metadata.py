"""``metadata.json``, the competition's description of a submission, and where its code lives."""

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from arena.config import Settings
from arena.errors import InputError
from arena.models import Submission, SubmissionKind


class MetadataError(InputError):
    """metadata.json is missing or wrong; the message says which field and why."""


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    type: SubmissionKind
    container: str
    container_gpu: str | None = None
    entry_point: str

    @field_validator("container")
    @classmethod
    def _container_named(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value):
            raise ValueError("must be an image name such as arena/python:bookworm")
        return value

    @field_validator("entry_point")
    @classmethod
    def _entry_point_relative(cls, value: str) -> str:
        path = PurePosixPath(value)
        if not value or path.is_absolute() or ".." in path.parts:
            raise ValueError("must be a file inside the submission, such as run_attack.sh")
        return path.as_posix()

    @classmethod
    def read(cls, root: Path) -> "Metadata":
        path = root / "metadata.json"
        if not path.is_file():
            raise MetadataError("metadata.json is missing at the top of the archive")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MetadataError(f"metadata.json is not valid JSON: {exc}") from None
        try:
            metadata = cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'metadata'}: {e['msg']}" for e in exc.errors())
            raise MetadataError(f"metadata.json: {problems}") from None
        entry = root / metadata.entry_point
        if not entry.is_file() or entry.is_symlink():
            raise MetadataError(f"metadata.json: entry_point {metadata.entry_point!r} is not a file in the archive")
        return metadata


@dataclass(frozen=True)
class SubmissionCode:
    """Unpacked code plus its metadata and pinned images: everything needed to run it."""

    root: Path
    metadata: Metadata
    #: Image ids by metadata field (``sandbox.pinning``); a tournament run always has the
    #: one it uses; code run outside a tournament (tests, benchmarks) may run its tags.
    pins: dict[str, str] = field(default_factory=dict)

    @classmethod
    def stored(cls, settings: Settings, submission: Submission, pins: dict[str, str]) -> "SubmissionCode":
        """A taken-in submission's code, where intake installed it, to run with ``pins``."""
        return cls(settings.submissions_dir / submission.sha256, Metadata.model_validate(submission.meta), pins)

    def image_field(self, gpu: bool = False) -> str:
        """The metadata field whose image a run uses: ``container_gpu`` on a GPU host when the
        submission names one, else ``container``."""
        return "container_gpu" if gpu and self.metadata.container_gpu else "container"

    def tag(self, gpu: bool = False) -> str:
        return getattr(self.metadata, self.image_field(gpu))

    def image(self, gpu: bool = False) -> str:
        """What a run starts: the pinned image id, the tag only where nothing is pinned."""
        return self.pins.get(self.image_field(gpu)) or self.tag(gpu)

    def command(self, *arguments: str) -> list[str]:
        return [f"./{self.metadata.entry_point}", *arguments]
