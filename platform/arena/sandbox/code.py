"""What the sandbox runs: a submission's unpacked code, how it starts and which image it runs in.

Intake reads ``metadata.json`` and says what it means (``intake.metadata``); everything that
runs code (the dry run, a pack, a benchmark) needs only these few fields, so the sandbox
and the executors never reach back into intake.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from arena.config import Settings
from arena.models import Submission, SubmissionKind


@dataclass(frozen=True)
class SubmissionCode:
    """Unpacked code, its kind, entry point and images, and the image ids pinned for them."""

    root: Path
    kind: SubmissionKind
    entry_point: str
    container: str
    container_gpu: str | None = None
    #: Image ids by metadata field (``sandbox.pinning``); a tournament run always has the
    #: one it uses; code run outside a tournament (tests, benchmarks) may run its tags.
    pins: dict[str, str] = field(default_factory=dict)
    #: A defense's query-track entry point (``sandbox.serving``); None: it serves no queries.
    serving_entry_point: str | None = None

    @classmethod
    def described(cls, root: Path, fields: Mapping[str, Any], pins: dict[str, str] | None = None) -> "SubmissionCode":
        """Code at ``root`` as checked metadata fields describe it (a ``Metadata``'s, or a
        submission's stored ``meta``)."""
        return cls(root, SubmissionKind(fields["type"]), fields["entry_point"], fields["container"],
                   fields.get("container_gpu"), dict(pins or {}), fields.get("serving_entry_point"))

    @classmethod
    def stored(cls, settings: Settings, submission: Submission, pins: dict[str, str]) -> "SubmissionCode":
        """A taken-in submission's code, where intake installed it, to run with ``pins``."""
        return cls.described(settings.submissions_dir / submission.sha256, submission.meta, pins)

    def pinned(self, pins: dict[str, str]) -> "SubmissionCode":
        return replace(self, pins=dict(pins))

    def image_field(self, gpu: bool = False) -> str:
        """The metadata field whose image a run uses: ``container_gpu`` on a GPU host when the
        submission names one, else ``container``."""
        return "container_gpu" if gpu and self.container_gpu else "container"

    def tag(self, gpu: bool = False) -> str:
        return getattr(self, self.image_field(gpu))

    def image(self, gpu: bool = False) -> str:
        """What a run starts: the pinned image id, the tag only where nothing is pinned."""
        return self.pins.get(self.image_field(gpu)) or self.tag(gpu)

    def command(self, *arguments: str) -> list[str]:
        return [f"./{self.entry_point}", *arguments]

    def serving_command(self) -> list[str]:
        """How a served defense starts: its serving entry point, no arguments."""
        if self.serving_entry_point is None:
            raise ValueError(f"{self.root.name} declares no serving_entry_point: it cannot answer queries")
        return [f"./{self.serving_entry_point}"]
