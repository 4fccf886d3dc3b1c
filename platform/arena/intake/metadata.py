"""``metadata.json``, the competition's description of a submission: read, checked, explained."""

import json
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

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
    #: A defense's second entry point, which answers label queries over its standard streams
    #: (docs/query-track.md): what lets the query track attack it. None: batch only, as in 2017.
    serving_entry_point: str | None = None

    @field_validator("container")
    @classmethod
    def _container_named(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value):
            raise ValueError("must be an image name such as arena/python:bookworm")
        return value

    @field_validator("entry_point", "serving_entry_point")
    @classmethod
    def _entry_point_relative(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = PurePosixPath(value)
        if not value or path.is_absolute() or ".." in path.parts:
            raise ValueError("must be a file inside the submission, such as run_attack.sh")
        return path.as_posix()

    @model_validator(mode="after")
    def _only_defenses_serve(self) -> "Metadata":
        if self.serving_entry_point is not None and self.type is not SubmissionKind.DEFENSE:
            raise ValueError(f"serving_entry_point is for defenses; a submission of type {self.type.value} has none")
        return self

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
        for name in ("entry_point", "serving_entry_point"):
            value = getattr(metadata, name)
            entry = root / value if value is not None else None
            if entry is not None and (not entry.is_file() or entry.is_symlink()):
                raise MetadataError(f"metadata.json: {name} {value!r} is not a file in the archive")
        return metadata

    def code(self, root: Path, pins: dict[str, str] | None = None) -> SubmissionCode:
        """The code at ``root`` that this metadata describes, as the sandbox runs it."""
        return SubmissionCode.described(root, self.model_dump(), pins)
