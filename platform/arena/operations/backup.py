"""``arena backup``: a consistent snapshot of an installation, taken while runs and uploads go on.

The database is copied first (``databases.snapshot``), with the rounds' naming keys in it;
every file the snapshot takes then comes from what that copy references: the store's
images named by its image and adversarial-image rows, the code of its submissions, the
bundles of its published rounds, the full logs its job attempts (a query job's: both its containers') and dry runs name. The store only ever gains files, each written before the
row that names it, so a file written after the copy is simply not referenced, and a file
the copy references is there. A snapshot is finished when its manifest is written, last.
"""

import itertools
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, select, union

from arena import job_states
from arena.config import Settings
from arena.data import logs
from arena.data.images import ImageStore, image_store
from arena.data.objects import ObjectMissing, store
from arena.errors import PlatformError
from arena.models import AdversarialImage, DryRun, Image, JobAttempt, Round, Submission, Visibility, utcnow
from arena.operations import databases
from arena.operations.layout import (
    DATABASE_FILES,
    FORMAT,
    MANIFEST,
    OBJECTS,
    TREES,
    BackupRoot,
    Progress,
    Snapshot,
    copy_by_hash,
    file_sha256,
    remove_unfinished,
    silent,
    write_atomically,
)
from arena.results.bundle import kept_name
from arena.sandbox import code

#: Where a snapshot lists the images it references while its database copy is open.
PENDING = ".objects.pending"


@dataclass(frozen=True)
class Contents:
    """What the snapshot's database holds and references, read from its copy."""

    revision: str | None
    rows: dict[str, int]
    images: int  # distinct store files referenced, listed in PENDING
    code: dict[str, str]  # submission code hash -> submission name
    being_taken_in: set[str]  # code hashes of uploads whose code was still being installed
    published_rounds: list[int]
    logs: list[str]  # the full logs' hashes (data/logs.py)


@dataclass
class Tally:
    """Files referenced and their bytes, and how many of them this snapshot copied."""

    count: int = 0
    bytes: int = 0
    copied: int = 0
    copied_bytes: int = 0

    def add(self, size: int, copied: bool) -> None:
        self.count, self.bytes = self.count + 1, self.bytes + size
        if copied:
            self.copied, self.copied_bytes = self.copied + 1, self.copied_bytes + size

    def figures(self) -> dict[str, int]:
        return {"count": self.count, "bytes": self.bytes, "copied": self.copied, "copied_bytes": self.copied_bytes}


@dataclass
class Blobs(Tally):
    """The tally of the blob pool's files, each counted once however many trees share it (a
    model's weights in several submissions)."""

    seen: set[str] = field(default_factory=set, repr=False)

    def add_blob(self, sha256: str, size: int, copied: bool) -> None:
        if sha256 not in self.seen:
            self.seen.add(sha256)
            self.add(size, copied)


def backup(settings: Settings, destination: Path, progress: Progress = silent) -> Snapshot:
    """Take a snapshot into the backup folder ``destination`` (made when missing): everything
    the pools there lack is copied, the rest is referred to."""
    root = BackupRoot.prepare(destination)
    earlier = root.finished()
    taken_at = utcnow()
    folder = root.new_folder(taken_at.strftime("%Y%m%dT%H%M%SZ"))
    try:
        manifest = _take(settings, root, folder, earlier[-1] if earlier else None, progress)
        manifest = {"format": FORMAT, "taken_at": taken_at.isoformat(), **manifest}
        write_atomically(folder / MANIFEST, json.dumps(manifest, indent=1))
    except BaseException:
        remove_unfinished(folder)
        raise
    return Snapshot(folder, manifest)


def _take(settings: Settings, root: BackupRoot, folder: Path, previous: Snapshot | None, progress: Progress) -> dict:
    database_file = folder / DATABASE_FILES[databases.dialect(settings)]
    progress("database", 0, None)
    with databases.snapshot(settings, database_file) as connection:
        contents = _contents(connection, folder / PENDING)
    progress("database", 1, 1)
    images = _copy_images(settings, root, folder, contents.images, progress)
    blobs, trees = Blobs(), {"submissions": {}, "downloads": {}}
    earlier_trees = _trees(previous)
    for sha256, name in _progressed(contents.code.items(), "code", progress):
        if tree := _code_tree(settings, root, sha256, name, contents, earlier_trees, blobs):
            trees["submissions"][sha256] = tree
    trees["downloads"] = _copy_bundles(settings, root, contents.published_rounds, blobs)
    trees["logs"] = _copy_logs(settings, root, contents.logs, blobs, progress)
    write_atomically(folder / TREES, json.dumps(trees, sort_keys=True))
    files = [database_file.name, OBJECTS, TREES]
    return {
        "previous": previous.folder.name if previous else None,
        "database": {"dialect": databases.dialect(settings), "file": database_file.name,
                     "revision": contents.revision, "rows": contents.rows},
        "objects": images.figures(),
        "blobs": blobs.figures(),
        "submissions": {"with_code": len(trees["submissions"]),
                        "being_taken_in": sorted(contents.code[sha] for sha in contents.being_taken_in
                                                 if sha not in trees["submissions"])},
        "bundles": sorted(trees["downloads"]),
        "logs": len(trees["logs"]),
        "files": {name: {"sha256": file_sha256(folder / name), "bytes": (folder / name).stat().st_size}
                  for name in files},
    }


def _contents(connection: Connection, pending: Path) -> Contents:
    """Read what the snapshot's database references, and list its store files, sorted, in
    ``pending`` (a 2017-size store holds millions: they are streamed, never all in memory)."""
    referenced = union(select(Image.sha256), select(AdversarialImage.sha256)).subquery()
    images = 0
    with pending.open("w") as listing:
        for sha256 in connection.execution_options(yield_per=10_000).scalars(
                select(referenced.c.sha256).order_by(referenced.c.sha256)):
            listing.write(f"{sha256}\n")
            images += 1
    submissions = connection.execute(
        select(Submission.sha256, Submission.name, job_states.held_for_upload())
        .outerjoin(DryRun, DryRun.submission_id == Submission.id).order_by(Submission.sha256)
    ).all()
    return Contents(
        revision=databases.revision(connection),
        rows=databases.row_counts(connection),
        images=images,
        code={sha256: name for sha256, name, _held in submissions},
        being_taken_in={sha256 for sha256, _name, held in submissions if held},
        published_rounds=list(connection.scalars(select(Round.id).where(Round.visibility == Visibility.PUBLISHED))),
        logs=list(connection.scalars(union(select(JobAttempt.log_sha256).where(JobAttempt.log_sha256.is_not(None)),
                                           select(JobAttempt.served_log_sha256)
                                           .where(JobAttempt.served_log_sha256.is_not(None)),
                                           select(DryRun.log_sha256).where(DryRun.log_sha256.is_not(None))))),
    )


def _copy_images(settings: Settings, root: BackupRoot, folder: Path, total: int, progress: Progress) -> Tally:
    """Copy the referenced store files the pool lacks, and write the snapshot's list of them
    with their sizes. The pool is listed one prefix folder at a time, as the sorted hashes
    come: a file there is not read again."""
    store, tally = image_store(settings), Tally()
    with (folder / PENDING).open() as pending, (folder / OBJECTS).open("w") as listing:
        hashes = (line.rstrip("\n") for line in pending)
        for prefix, group in itertools.groupby(hashes, key=lambda sha256: sha256[:2]):
            present = _listing(root.objects_folder / prefix)
            for sha256 in group:
                entry = present.get(f"{sha256}.png")
                size = _copy_image(store, root, sha256) if entry is None else entry.stat().st_size
                tally.add(size, copied=entry is None)
                listing.write(f"{sha256} {size}\n")
            progress("images", tally.count, total)
    (folder / PENDING).unlink()
    progress("images", tally.count, total)
    return tally


def _listing(folder: Path) -> dict[str, os.DirEntry]:
    """The files of one pool folder by name (none when it is not there yet): one read of the
    folder, and a file's size asked only of those referenced."""
    try:
        with os.scandir(folder) as entries:
            return {entry.name: entry for entry in entries if entry.is_file()}
    except FileNotFoundError:
        return {}


def _copy_image(store: ImageStore, root: BackupRoot, sha256: str) -> int:
    """Copy one store file into the pool, checked against its name on the way."""
    source = store.path(sha256)  # an object store lacking it, or holding it damaged, says so itself
    if not source.is_file():
        raise PlatformError(f"the image store lacks {source}, which the database references: the store is damaged "
                            "(restore it from an earlier backup)")
    copied = copy_by_hash(source, root.objects_folder, root.objects.path)
    if copied.sha256 != sha256:
        raise PlatformError(f"{source} does not match its hash: the store is damaged (restore it from an earlier backup)")
    return copied.size


def _trees(snapshot: Snapshot | None) -> dict[str, list]:
    """The code trees an earlier snapshot recorded: code never changes once installed, so
    its files are not read again."""
    if snapshot is None:
        return {}
    return json.loads((snapshot.folder / TREES).read_text(encoding="utf-8"))["submissions"]


def _code_tree(settings: Settings, root: BackupRoot, sha256: str, name: str, contents: Contents,
               earlier: dict[str, list], blobs: Blobs) -> list | None:
    """One submission's code tree, its files copied into the pool (none when its upload was
    still installing it at the snapshot)."""
    if sha256 in earlier:
        for entry in earlier[sha256]:
            if entry[0] == "f":
                blobs.add_blob(entry[3], entry[4], copied=False)
        return earlier[sha256]
    try:
        folder = code.fetched(settings, sha256)
    except ObjectMissing:
        folder = None
    if folder is None or not folder.is_dir():
        if sha256 in contents.being_taken_in:
            return None
        where = folder or f"the object store ({sha256}.tar)"
        raise PlatformError(f"the code of submission {name!r} is missing from {where}: the installation is damaged")
    return [_tree_entry(root, path, path.relative_to(folder).as_posix(), blobs) for path in _walk(folder)]


def _walk(folder: Path) -> Iterator[Path]:
    """Every entry under ``folder``, in name order, without following links."""
    for parent, directories, files in os.walk(folder):
        directories.sort()
        for name in sorted(directories + files):
            yield Path(parent) / name


def _tree_entry(root: BackupRoot, path: Path, relative: str, blobs: Blobs) -> list:
    """``["l", path, link]``, ``["d", path, mode]`` or ``["f", path, mode, sha256, size]``."""
    if path.is_symlink():
        return ["l", relative, os.readlink(path)]
    mode = path.stat().st_mode & 0o777
    if path.is_dir():
        return ["d", relative, mode]
    copied = copy_by_hash(path, root.blobs, root.blob)
    blobs.add_blob(copied.sha256, copied.size, copied.new)
    return ["f", relative, mode, copied.sha256, copied.size]


def _copy_bundles(settings: Settings, root: BackupRoot, published: list[int], blobs: Blobs) -> dict[str, list]:
    """The kept results bundles of the rounds published in the snapshot (a published round
    never changes); a round's bundle not built yet is built on demand after a restore."""
    found, bundles = {}, store(settings).bundles
    for name in map(kept_name, published):
        if bundles.exists(name):
            copied = copy_by_hash(bundles.path(name), root.blobs, root.blob)
            blobs.add_blob(copied.sha256, copied.size, copied.new)
            found[name] = [copied.sha256, copied.size]
    return found


def _copy_logs(settings: Settings, root: BackupRoot, kept: list[str], blobs: Blobs, progress: Progress) -> dict[str, int]:
    """The full logs the snapshot's rows name, into the blob pool, each by its size (their
    hash is their name there too: a log the pool holds already is not read again)."""
    found, kept_logs = {}, store(settings).logs
    for sha256 in _progressed(sorted(kept), "logs", progress):
        if (pooled := root.blob(sha256)).is_file():
            blobs.add_blob(sha256, size := pooled.stat().st_size, copied=False)
        else:
            source = kept_logs.path(logs.key(sha256), sha256)  # an object store lacking it says so itself
            if not source.is_file():
                raise PlatformError(f"the store lacks the log {logs.key(sha256)}, which the database references: the "
                                    "store is damaged (restore it from an earlier backup)")
            copied = copy_by_hash(source, root.blobs, root.blob)
            if copied.sha256 != sha256:
                raise PlatformError(f"the log {logs.key(sha256)} does not match its hash: the store is damaged "
                                    "(restore it from an earlier backup)")
            blobs.add_blob(sha256, size := copied.size, copied.new)
        found[sha256] = size
    return found


def _progressed(items, step: str, progress: Progress) -> Iterator:
    items = list(items)
    for done, item in enumerate(items):
        progress(step, done, len(items))
        yield item
    progress(step, len(items), len(items))


def describe(snapshot: Snapshot) -> str:
    """What a snapshot holds and what it copied, in a few lines."""
    manifest = snapshot.manifest
    rows = manifest["database"]["rows"]
    images, blobs = manifest["objects"], manifest["blobs"]
    lines = [
        f"snapshot {snapshot.folder}",
        f"database: {manifest['database']['dialect']}, {len(rows)} tables, {sum(rows.values()):,} rows",
        f"images: {images['count']:,} ({_size(images['bytes'])}), {images['copied']:,} copied ({_size(images['copied_bytes'])})",
        f"code and bundles: {manifest['submissions']['with_code']} submissions, {len(manifest['bundles'])} bundles, "
        f"{blobs['count']:,} files ({_size(blobs['bytes'])}), {blobs['copied']:,} copied ({_size(blobs['copied_bytes'])})",
    ]
    if manifest["previous"]:
        lines.append(f"files the backup folder already held (from {manifest['previous']} and before) were not copied again")
    if waiting := manifest["submissions"]["being_taken_in"]:
        lines.append(f"uploads still being taken in, without their code: {', '.join(waiting)}")
    return "\n".join(lines)


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"
