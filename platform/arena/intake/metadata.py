"""``metadata.json``, the competition's description of a submission: read, checked, explained."""

import json
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from arena.errors import InputError
from arena.models import SubmissionKind
from arena.sandbox.code import SubmissionCode


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

    def code(self, root: Path, pins: dict[str, str] | None = None) -> SubmissionCode:
        """The code at ``root`` that this metadata describes, as the sandbox runs it."""
        return SubmissionCode.described(root, self.model_dump(), pins)
