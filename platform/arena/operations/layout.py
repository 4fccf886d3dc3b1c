"""A backup folder: two pools of content-addressed files shared by every snapshot in it, and
one folder per snapshot.

::

    DEST/objects/ab/abcd....png     the image store's files, laid out as the store lays them out
    DEST/blobs/ab/abcd...           every other file by its sha256: submissions' code, kept bundles
    DEST/snapshots/20260501T020000Z/
        database.sqlite | database.pgdump
        objects.txt                 the images the snapshot's database references: "sha256 bytes" a line, sorted
        trees.json                  each submission's code tree and each kept bundle, as paths to blobs
        manifest.json               counts, and the sha256 of every file above: written last

A pooled file is named by the sha256 of its bytes, so a later snapshot copies only the files
the pools lack (an incremental backup is any backup into a folder that holds one), and a
damaged file is told by its name alone. A snapshot folder without ``manifest.json`` is one
that did not finish: restore never takes it.
"""

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from arena.data.images import ImageStore
from arena.errors import InputError

FORMAT = "arena-backup/1"
MANIFEST = "manifest.json"
OBJECTS = "objects.txt"
TREES = "trees.json"
#: What every manifest says (``backup._take``).
MANIFEST_KEYS = {"format", "taken_at", "previous", "database", "objects", "blobs", "submissions", "bundles", "files"}
#: The snapshot's database file, by SQLAlchemy dialect.
DATABASE_FILES = {"sqlite": "database.sqlite", "postgresql": "database.pgdump"}

#: How a long step reports: its name, how far it got, and of how much (None: not known yet).
Progress = Callable[[str, int, int | None], None]


def silent(_step: str, _done: int, _total: int | None) -> None:
    return None


class SnapshotError(InputError):
    """A snapshot that cannot be restored (incomplete, damaged, of another kind of database),
    or a folder that is not a backup; the message names the file."""


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@dataclass(frozen=True)
class Copied:
    """A file copied: the sha256 and size of its bytes, and whether the target was new."""

    sha256: str
    size: int
    new: bool = True


def copy_to(source: Path, target: Path, mode: int = 0o644) -> Copied:
    """Copy ``source`` to ``target`` through a scratch file beside it and a rename, so that a
    file in a pool or a store is never half there; the bytes are read once, and hashed. A
    target already there is kept (``copy_by_hash``): callers copy into a content-addressed
    place, or where they made sure nothing is."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return copy_by_hash(source, target.parent, lambda _digest: target, mode)


def copy_by_hash(source: Path, scratch_folder: Path, target_of: Callable[[str], Path], mode: int = 0o644) -> Copied:
    """Copy ``source`` to ``target_of(its sha256)`` through a scratch file in ``scratch_folder``
    (on the target's file system) and a rename; a target already there is kept as it is
    (a pool's file of that name holds those very bytes)."""
    scratch = scratch_folder / f".incoming.{secrets.token_hex(8)}"
    digest = hashlib.sha256()
    try:
        with source.open("rb") as reading, scratch.open("xb") as writing:
            while chunk := reading.read(1 << 20):
                digest.update(chunk)
                writing.write(chunk)
            size = writing.tell()
        target = target_of(digest.hexdigest())
        if target.exists():
            scratch.unlink()
            return Copied(digest.hexdigest(), size, new=False)
        scratch.chmod(mode)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(scratch, target)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise
    return Copied(digest.hexdigest(), size)


def write_atomically(target: Path, text: str) -> None:
    """``target`` holds all of ``text`` or is not there: a scratch file, then a rename."""
    scratch = target.with_name(f".{target.name}.{secrets.token_hex(8)}")
    try:
        scratch.write_text(text, encoding="utf-8")
        os.replace(scratch, target)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Snapshot:
    """One finished snapshot: its folder and its manifest."""

    folder: Path
    manifest: dict

    @property
    def root(self) -> "BackupRoot":
        return BackupRoot(self.folder.parent.parent)

    @property
    def database_file(self) -> Path:
        return self.folder / DATABASE_FILES[self.manifest["database"]["dialect"]]

    def named(self, path: Path) -> str:
        """``path`` as messages name it: relative to the backup folder."""
        return path.relative_to(self.root.path).as_posix()

    @classmethod
    def read(cls, folder: Path) -> "Snapshot":
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SnapshotError(f"{folder / MANIFEST} cannot be read: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise SnapshotError(f"{folder / MANIFEST} is not the manifest of an Arena snapshot ({FORMAT})")
        if missing := sorted(MANIFEST_KEYS - set(manifest)):
            raise SnapshotError(f"{folder / MANIFEST} lacks {', '.join(missing)}")
        return cls(folder, manifest)


@dataclass(frozen=True)
class BackupRoot:
    """A backup folder (``DEST``): the pools and the snapshots."""

    path: Path

    @property
    def objects(self) -> ImageStore:
        return ImageStore(self.objects_folder)

    @property
    def objects_folder(self) -> Path:
        return self.path / "objects"

    @property
    def blobs(self) -> Path:
        return self.path / "blobs"

    def blob(self, sha256: str) -> Path:
        return self.blobs / sha256[:2] / sha256

    @property
    def snapshots(self) -> Path:
        return self.path / "snapshots"

    @classmethod
    def prepare(cls, path: Path) -> "BackupRoot":
        """The backup folder at ``path``, made when it does not exist; a folder that holds
        anything else is refused, so a mistyped path never fills someone's folder."""
        if path.exists() and not path.is_dir():
            raise SnapshotError(f"{path} is a file, not a backup folder")
        if path.is_dir() and any(path.iterdir()) and not (path / "snapshots").is_dir():
            raise SnapshotError(f"{path} holds files but is not an Arena backup folder (no snapshots/ in it): "
                                "back up into an empty or new folder, or into one that holds earlier snapshots")
        path.mkdir(mode=0o700, parents=True, exist_ok=True)  # teams' code and the rounds' naming keys: the organizers' alone
        root = cls(path)
        for folder in (root.snapshots, root.objects_folder, root.blobs):
            folder.mkdir(exist_ok=True)
        return root

    def finished(self) -> list[Snapshot]:
        """The snapshots that finished (those with a manifest), oldest first."""
        found = [Snapshot.read(folder) for folder in self.snapshots.iterdir() if (folder / MANIFEST).is_file()]
        return sorted(found, key=lambda snapshot: (snapshot.manifest["taken_at"], snapshot.folder.name))

    def new_folder(self, stamp: str) -> Path:
        """A new snapshot's folder, named by when it is taken (a second one in the same
        second gets a suffix)."""
        for attempt in range(1, 100):
            folder = self.snapshots / (stamp if attempt == 1 else f"{stamp}-{attempt}")
            try:
                folder.mkdir()
                return folder
            except FileExistsError:
                continue
        raise SnapshotError(f"{self.snapshots} already holds 99 snapshots named {stamp}")


def find_snapshot(source: Path) -> Snapshot:
    """The snapshot ``source`` names: a snapshot folder, or a backup folder (its newest
    finished snapshot)."""
    if (source / MANIFEST).is_file():
        snapshot = Snapshot.read(source)
        if snapshot.folder.parent.name != "snapshots":
            raise SnapshotError(f"{source} is not inside a backup folder's snapshots/: its pools cannot be found")
        return snapshot
    if (source / "snapshots").is_dir():
        finished = BackupRoot(source).finished()
        if not finished:
            raise SnapshotError(f"{source} holds no finished snapshot (a snapshot folder without {MANIFEST} "
                                "is one that did not finish)")
        return finished[-1]
    if source.parent.name == "snapshots" and source.is_dir():
        raise SnapshotError(f"{source} is a snapshot that did not finish: it has no {MANIFEST}")
    raise SnapshotError(f"{source} is neither an Arena backup folder nor a snapshot in one")


def remove_unfinished(folder: Path) -> None:
    """A snapshot that failed half-way leaves nothing in its folder (the pools keep what was
    copied: sound files a later backup takes as they are)."""
    shutil.rmtree(folder, ignore_errors=True)
