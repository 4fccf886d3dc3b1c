"""``arena restore``: a snapshot brought back into an empty installation.

Every file the snapshot needs is checked against its hash before anything is written, so a
damaged or incomplete snapshot is refused whole, naming its files, and leaves the target as
it was. The files go in first and the database last, so that an installation with a
database is a whole one; then the row counts are compared with the manifest's, and the
schema is brought to this Arena's revision (a snapshot of an older release's database is
migrated as ``arena db upgrade`` would). An upload caught half taken in (its row committed,
its code not installed yet) is left out, as a failed upload is.
"""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import select
from sqlalchemy.engine import make_url

from arena import db
from arena.config import Settings
from arena.data import logs, objects
from arena.data.images import image_store
from arena.errors import ConflictError, PlatformError
from arena.models import Submission
from arena.operations import databases
from arena.operations.layout import (
    OBJECTS,
    TREES,
    Progress,
    Snapshot,
    SnapshotError,
    copy_to,
    file_sha256,
    find_snapshot,
    silent,
)
from arena.sandbox import code

#: Problems named in a refusal; the rest are counted.
NAMED_PROBLEMS = 10
#: A full log's name in a snapshot: its hash (``data/logs.py``), nothing that could be a path.
LOG_NAME = re.compile(r"[0-9a-f]{64}")
#: Files checked or copied between two reports of progress.
REPORT_EVERY = 1000


@dataclass(frozen=True)
class Restored:
    snapshot: Snapshot
    revision: str  # the schema's revision after the restore

    def describe(self) -> str:
        manifest = self.snapshot.manifest
        lines = [f"restored {self.snapshot.folder} (taken {manifest['taken_at']}): "
                 f"{manifest['objects']['count']:,} images, {manifest['submissions']['with_code']} submissions' code, "
                 f"{len(manifest['bundles'])} bundles, the database at revision {self.revision}"]
        if manifest["database"]["revision"] != self.revision:
            lines.append(f"the database was upgraded from revision {manifest['database']['revision']}")
        if waiting := manifest["submissions"]["being_taken_in"]:
            lines.append(f"uploads not taken in yet at the snapshot (their code was still being installed), left "
                         f"out as a failed upload is: {', '.join(waiting)}; their teams upload them again")
        return "\n".join(lines)


def restore(settings: Settings, source: Path, progress: Progress = silent) -> Restored:
    """Restore the snapshot ``source`` names (a snapshot folder, or a backup folder: its
    newest finished snapshot) into the installation of ``settings``, which must be empty."""
    snapshot = find_snapshot(source)
    _refuse_another_kind(settings, snapshot)
    _refuse_unless_empty(settings)
    trees = _verified(snapshot, progress)
    _write_files(settings, snapshot, trees, progress)
    databases.load(settings, snapshot.database_file)
    _check_rows(settings, snapshot)
    db.upgrade(settings)
    _forget_uploads_without_code(settings, snapshot)
    with db.get_engine(settings.resolved_database_url).connect() as connection:
        return Restored(snapshot, databases.revision(connection))


def _refuse_another_kind(settings: Settings, snapshot: Snapshot) -> None:
    """A snapshot goes back into the kind of database it came from, at a schema this Arena knows."""
    taken, here = snapshot.manifest["database"]["dialect"], databases.dialect(settings)
    if taken != here:
        raise SnapshotError(f"{snapshot.folder} holds a {taken} database and this installation's is {here} "
                            "(ARENA_DATABASE_URL): restore into an installation of the same kind")
    revision = snapshot.manifest["database"]["revision"]
    try:
        ScriptDirectory.from_config(db.alembic_config(settings)).get_revision(revision)
    except CommandError:
        raise SnapshotError(f"{snapshot.folder} holds a database at revision {revision}, which this Arena does not "
                            "know: a newer release took it; restore it with that release") from None


def _refuse_unless_empty(settings: Settings) -> None:
    """Refuse, saying what is there, a target with tables in its database or files in its
    data folder (its scratch folder and an empty SQLite file aside)."""
    found = []
    if tables := databases.tables(settings):
        shown = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
        listed = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        found.append(f"the database {shown} has {len(tables)} tables ({listed})")
    if held := _held(settings):
        found.append(f"{settings.data_dir} holds {', '.join(held)}")
    if found:
        raise ConflictError(f"restore needs an empty installation and this one is not: {'; '.join(found)}. Restore "
                            "into a fresh data folder (ARENA_DATA_DIR) and an empty database (ARENA_DATABASE_URL)")


def _held(settings: Settings) -> list[str]:
    """What the data folder holds, besides its scratch folder, the SQLite file (judged by its
    tables) and empty folders."""
    if not settings.data_dir.is_dir():
        return []
    ignored = {"work"}
    if databases.dialect(settings) == "sqlite":
        name = Path(make_url(settings.resolved_database_url).database).name
        ignored |= {name, f"{name}-wal", f"{name}-shm"}
    return [f"{entry.name}/" if entry.is_dir() else entry.name for entry in sorted(settings.data_dir.iterdir())
            if entry.name not in ignored and not (entry.is_dir() and not _has_files(entry))]


def _has_files(folder: Path) -> bool:
    return any(not path.is_dir() for path in folder.rglob("*"))


class _Problems:
    """What is wrong with a snapshot's files, named relative to its backup folder."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot, self.named, self.count = snapshot, [], 0

    def check(self, path: Path, sha256: str) -> None:
        if not path.is_file():
            self._add(f"{self.snapshot.named(path)} is missing")
        elif file_sha256(path) != sha256:
            self._add(f"{self.snapshot.named(path)} does not match its hash")

    def _add(self, problem: str) -> None:
        self.count += 1
        if len(self.named) < NAMED_PROBLEMS:
            self.named.append(problem)

    def refuse(self) -> None:
        if self.count:
            more = f"; and {self.count - len(self.named)} more" if self.count > len(self.named) else ""
            raise SnapshotError(f"the snapshot {self.snapshot.folder} cannot be restored (nothing was written): "
                                f"{'; '.join(self.named)}{more}")


def _verified(snapshot: Snapshot, progress: Progress) -> dict:
    """Check every file the snapshot needs against its hash: its own files first (the lists
    of the rest are among them), then each image and blob in the pools. Return its trees."""
    problems = _Problems(snapshot)
    for name, expected in snapshot.manifest["files"].items():
        problems.check(snapshot.folder / name, expected["sha256"])
    problems.refuse()
    trees = json.loads((snapshot.folder / TREES).read_text(encoding="utf-8"))
    _refuse_paths_outside(snapshot, trees)
    blobs = sorted(_blobs(trees))
    total, checked = snapshot.manifest["objects"]["count"] + len(blobs), 0
    pool = snapshot.root.objects
    for sha256 in _listed(snapshot):
        problems.check(pool.path(sha256), sha256)
        checked = _advanced(progress, "checking", checked, total)
    for sha256 in blobs:
        problems.check(snapshot.root.blob(sha256), sha256)
        checked = _advanced(progress, "checking", checked, total)
    progress("checking", checked, total)
    problems.refuse()
    return trees


def _advanced(progress: Progress, step: str, done: int, total: int) -> int:
    done += 1
    if done % REPORT_EVERY == 0:
        progress(step, done, total)
    return done


def _blobs(trees: dict) -> set[str]:
    code = {entry[3] for tree in trees["submissions"].values() for entry in tree if entry[0] == "f"}
    return code | {sha256 for sha256, _size in trees["downloads"].values()} | set(_logs(trees))


def _logs(trees: dict) -> dict[str, int]:
    """The full logs a snapshot holds, by hash (none in one taken before they were kept)."""
    return trees.get("logs", {})


def _refuse_paths_outside(snapshot: Snapshot, trees: dict) -> None:
    """A tree's paths stay inside its folder, and a tree's folder and a bundle are plain
    names: a snapshot restores nothing anywhere else."""
    names = [*trees["submissions"], *trees["downloads"]]
    if bad := [sha256 for sha256 in _logs(trees) if not LOG_NAME.fullmatch(sha256)]:
        raise SnapshotError(f"{snapshot.named(snapshot.folder / TREES)} names the log {bad[0]!r}, which is no hash")
    paths = [entry[1] for tree in trees["submissions"].values() for entry in tree]
    for path, plain in [*((name, True) for name in names), *((path, False) for path in paths)]:
        parts = PurePosixPath(path).parts
        if not parts or PurePosixPath(path).is_absolute() or ".." in parts or (plain and len(parts) > 1):
            raise SnapshotError(f"{snapshot.named(snapshot.folder / TREES)} names {path!r}, a path outside the folder "
                                "it restores into")


def _listed(snapshot: Snapshot) -> Iterator[str]:
    """The images the snapshot references, streamed from its list."""
    with (snapshot.folder / OBJECTS).open(encoding="utf-8") as listing:
        for line in listing:
            yield line.split(" ", 1)[0]


def _write_files(settings: Settings, snapshot: Snapshot, trees: dict, progress: Progress) -> None:
    store, pool, total = image_store(settings), snapshot.root.objects, snapshot.manifest["objects"]["count"]
    copied = 0
    for sha256 in _listed(snapshot):
        store.put(pool.read_bytes(sha256))  # checked already: its bytes hash to its name
        copied = _advanced(progress, "images", copied, total)
    progress("images", copied, total)
    for sha256, tree in trees["submissions"].items():
        _write_tree(snapshot, code.code_folder(settings, sha256), tree)
        code.publish(settings, sha256)
    bundles = objects.store(settings).bundles
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    for name, (sha256, _size) in trees["downloads"].items():
        scratch = settings.work_dir / f".{name}.{sha256[:16]}"
        copy_to(snapshot.root.blob(sha256), scratch)
        bundles.put_file(name, scratch)
    kept_logs = objects.store(settings).logs
    for sha256 in _logs(trees):
        scratch = settings.work_dir / f".{sha256}.log"
        copy_to(snapshot.root.blob(sha256), scratch)
        kept_logs.put_file(logs.key(sha256), scratch)


def _write_tree(snapshot: Snapshot, target: Path, tree: list) -> None:
    """A submission's code as intake installed it: files with their modes, links, folders
    (their modes set last, once their files are in)."""
    target.mkdir(parents=True)
    folders = [(target, 0o755)]
    for entry in tree:
        path = target / entry[1]
        if entry[0] == "d":
            path.mkdir(parents=True, exist_ok=True)
            folders.append((path, entry[2]))
        elif entry[0] == "l":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.symlink_to(entry[2])
        else:
            copy_to(snapshot.root.blob(entry[3]), path, mode=entry[2])
    for folder, mode in reversed(folders):
        folder.chmod(mode)


def _check_rows(settings: Settings, snapshot: Snapshot) -> None:
    """The restored database has every row the snapshot counted, table by table."""
    with db.get_engine(settings.resolved_database_url).connect() as connection:
        restored = databases.row_counts(connection)
    expected = snapshot.manifest["database"]["rows"]
    wrong = [f"{name}: {restored.get(name, 0):,} of {count:,}" for name, count in expected.items()
             if restored.get(name, 0) != count]
    if wrong:
        raise PlatformError(f"the restored database lacks rows the snapshot holds ({'; '.join(wrong)}): the restore "
                            "is incomplete; empty the installation and restore again")


def _forget_uploads_without_code(settings: Settings, snapshot: Snapshot) -> None:
    """An upload whose code was still being installed at the snapshot has a row but no code:
    it is forgotten, as intake forgets an upload whose installation failed, so that its team
    can upload it again (the same code would otherwise be refused as a duplicate)."""
    names = snapshot.manifest["submissions"]["being_taken_in"]
    if names:
        with db.transaction(settings) as session:
            for submission in session.scalars(select(Submission).where(Submission.name.in_(names))):
                session.delete(submission)
