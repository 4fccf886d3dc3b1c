"""What the sandbox runs: a submission's unpacked code, how it starts and which image it runs in.

Intake reads ``metadata.json`` and says what it means (``intake.metadata``); everything that
runs code (the dry run, a pack, a benchmark) needs only these few fields, so the sandbox
and the executors never reach back into intake.

Where the code is: with the local store, the tree intake installed under
``submissions/<sha256>/``; with an object store, a tar of that tree (``code/<sha256>.tar``,
put by intake: ``publish``) that each host unpacks once into its own ``cache/code/`` the first
time it runs the submission (``fetched``), so hosts share no folder.
"""

import secrets
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from arena.config import Settings
from arena.data.objects import ObjectCorrupted, store
from arena.models import Submission, SubmissionKind


@dataclass(frozen=True)
class StoredSubmission:
    """What a run needs of a taken-in submission's row, read inside a transaction and used
    after it: fetching the code and pulling the image may take minutes, and must hold no
    database connection meanwhile."""

    id: int
    name: str
    sha256: str
    meta: dict[str, Any]
    pins: dict[str, str]  # the pinned images by metadata field, those pinned only

    @classmethod
    def of(cls, submission: Submission) -> "StoredSubmission":
        return cls(submission.id, submission.name, submission.sha256, dict(submission.meta), submission.pins)


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
    def stored(cls, settings: Settings, submission: StoredSubmission, pins: dict[str, str]) -> "SubmissionCode":
        """A taken-in submission's code, where intake installed it (fetched onto this host with
        an object store), to run with ``pins``."""
        return cls.described(fetched(settings, submission.sha256), submission.meta, pins)

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


def _archive(sha256: str) -> str:
    return f"{sha256}.tar"


def code_folder(settings: Settings, sha256: str) -> Path:
    """Where this host keeps the unpacked code whose tree hashes to ``sha256``: the stored
    tree itself with the local store, this host's copy of the archive's tree with an object store."""
    return settings.submissions_dir / sha256 if store(settings).code is None else settings.cache_dir / "code" / sha256


def publish(settings: Settings, sha256: str) -> None:
    """Put the tree intake installed at ``code_folder`` into the object store as an archive,
    for the hosts that will run it (nothing to do with the local store, whose tree it is)."""
    objects = store(settings).code
    if objects is None:
        return
    folder = code_folder(settings, sha256)
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=settings.work_dir, suffix=".tar", delete=False) as handle:
        with tarfile.open(fileobj=handle, mode="w") as tar:
            for child in sorted(folder.iterdir()):
                tar.add(child, arcname=child.name)  # links stay links, as intake installed them
    objects.put_file(_archive(sha256), Path(handle.name))


def fetched(settings: Settings, sha256: str) -> Path:
    """The unpacked code on this host: fetched (checked against its hash) and unpacked the
    first time, through a scratch folder and a rename, so a tree that is there is whole."""
    folder, objects = code_folder(settings, sha256), store(settings).code
    if objects is None or folder.is_dir():
        return folder
    archive = objects.path(_archive(sha256))
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = folder.with_name(f".{sha256}.{secrets.token_hex(8)}")
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(scratch, filter="data")  # nothing outside the folder, no device, no owner
        for path in [scratch, *scratch.rglob("*")]:
            if not path.is_symlink():  # readable by the sandbox's user, as intake installed it
                path.chmod(0o755 if path.is_dir() else (path.stat().st_mode & 0o777) | 0o444)
        scratch.rename(folder)
    except tarfile.TarError as exc:
        raise ObjectCorrupted(f"the code archive {archive} cannot be unpacked: {exc}") from None
    except OSError:
        if not folder.is_dir():  # else another run on this host unpacked it first
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder
