"""Taking in a submission, with nothing that needs a container: unpack safely, check its
metadata, dedup, the deadline and the quota, store it ``queued`` with its dry run to do.

Each step fails with a message that names the problem; nothing is stored unless the
archive unpacked safely and its metadata is sound. The dry run (pinning, one batch, the
determinism probe) is a job that runners and workers take (``execution.checking``): the
process that took the upload, the web's included, never needs a Docker engine.
"""

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from arena import job_states
from arena.admin import teams
from arena.competition import entries, quotas, rounds
from arena.config import Settings
from arena.db import transaction
from arena.errors import InputError
from arena.intake.archive import extract, tree_sha256
from arena.intake.metadata import Metadata
from arena.models import DryRun, Round, Submission, Team, name_key
from arena.sandbox import code


class SubmissionError(InputError):
    """The submission cannot be taken; the message says why."""


def _check_allowed(settings: Settings, metadata: Metadata) -> None:
    if settings.allowed_images and metadata.container not in settings.allowed_images:
        allowed = ", ".join(settings.allowed_images)
        raise SubmissionError(f"container {metadata.container!r} is not allowed here (allowed: {allowed})")


def _refuse_duplicate(session: Session, sha256: str, name: str, team: str) -> None:
    """Refuse code that was submitted before, naming the earlier submission only to its own
    team: another team's entry may sit in a round whose entries are hidden."""
    same = session.scalar(select(Submission).where(Submission.sha256 == sha256))
    if same and same.team.name_key != name_key(team):
        raise SubmissionError("this code was already submitted by another team")
    if same:
        raise SubmissionError(f"this code was already submitted as {same.name!r} (status {same.status.value}); "
                              "to take part in another round with it, ask the organizers to carry it there "
                              "(they carry the counting entries of one round into the next)")
    if session.scalar(select(Submission).where(Submission.name == name)):
        raise SubmissionError(f"a submission named {name!r} exists; choose another with --name")


def _register(settings: Settings, sha256: str, name: str, team: str, metadata: Metadata, round_id: int,
              description: str | None) -> int:
    """Store the submission, queued, before anything else is done with its code.

    Two uploads of the same code (or name, or a new team's first two) may race: the unique
    constraints decide, and the loser is told what the winner took, as if it had come
    second; a race over the new team alone is simply tried again, the team now existing."""
    try:
        return _insert(settings, sha256, name, team, metadata, round_id, description)
    except IntegrityError:
        with transaction(settings) as session:
            _refuse_duplicate(session, sha256, name, team)
        return _insert(settings, sha256, name, team, metadata, round_id, description)


def _insert(settings: Settings, sha256: str, name: str, team: str, metadata: Metadata, round_id: int,
            description: str | None) -> int:
    """The row, its round entry and its dry run, after the deadline and the team's quota are checked in
    the same transaction (the team's row locked on PostgreSQL, so two uploads at once
    cannot both take the last one; SQLite writes one transaction at a time anyway)."""
    with transaction(settings) as session:
        _refuse_duplicate(session, sha256, name, team)
        round_ = session.get_one(Round, round_id)
        owner = (session.scalar(select(Team).where(Team.name_key == name_key(team)).with_for_update())
                 or Team(name=teams.team_name(team)))
        rounds.refuse_unless_open(round_)
        if owner.id is not None:
            quotas.check(session, round_, owner, metadata.type)
        submission = Submission(team=owner, name=name, kind=metadata.type, sha256=sha256, meta=metadata.model_dump(),
                                description=description)
        session.add(submission)
        entries.enter(session, round_, submission)
        dry_run = DryRun(submission=submission, round_id=round_.id)
        job_states.hold_for_upload(dry_run, settings.lease_seconds)  # no runner takes it before its code is in
        session.add(dry_run)
        session.flush()
        return submission.id


#: The longest description a submission may carry.
MAX_DESCRIPTION = 2000


def _description(text: str | None) -> str | None:
    """The team's words, trimmed; none when blank; refused when too long to be a description."""
    text = (text or "").strip()
    if len(text) > MAX_DESCRIPTION:
        raise SubmissionError(f"the description has {len(text)} characters; at most {MAX_DESCRIPTION} are kept")
    return text or None


def _forget(settings: Settings, submission_id: int) -> None:
    with transaction(settings) as session:
        session.delete(session.get(Submission, submission_id))


def _default_name(archive: Path) -> str:
    name = archive.name
    for suffix in (".tar.gz", ".tgz", ".zip", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return archive.stem


@contextmanager
def unpacked(settings: Settings, archive: Path) -> Iterator[tuple[Path, Metadata, str]]:
    """Unpack into a scratch folder that is removed afterwards; yield (root, metadata, tree hash)."""
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="intake-", dir=settings.work_dir))
    try:
        root = extract(archive, scratch / "tree", max_bytes=settings.max_archive_bytes, max_files=settings.max_archive_files)
        metadata = Metadata.read(root)
        yield root, metadata, tree_sha256(root)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def install(settings: Settings, root: Path, metadata: Metadata, sha256: str) -> Path:
    """Move the tree to its permanent, content-addressed place, readable by the sandbox user,
    and with an object store put its archive there for the other hosts (an upload's, or a
    replayed round's: ``tools.replay``)."""
    target = code.code_folder(settings, sha256)
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(root), target)
    for path in [target, *target.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else (path.stat().st_mode & 0o777) | 0o444)
    (target / metadata.entry_point).chmod(0o755)  # zip files often lose the executable bit
    code.publish(settings, sha256)
    return target


def take(settings: Settings, archive: Path, team: str, name: str | None = None,
         round_name: str | None = None, description: str | None = None) -> Submission:
    """Take an archive into a round (the one open now, unless named), with nothing that needs
    a container: unpack, check, store it as ``queued`` with its dry run to do, and install its
    code; a runner or worker checks it (``execution.checking``). What is refused here (a bad
    archive or metadata, a duplicate, the deadline, the quota) stores nothing."""
    description = _description(description)
    with transaction(settings) as session:
        round_id = rounds.for_uploads(session, round_name).id
    name = name or _default_name(archive)
    with unpacked(settings, archive) as (root, metadata, sha256):
        _check_allowed(settings, metadata)
        submission_id = _register(settings, sha256, name, team, metadata, round_id, description)
        try:
            install(settings, root, metadata, sha256)
        except BaseException:
            _forget(settings, submission_id)
            raise
    with transaction(settings) as session:
        submission = session.get_one(Submission, submission_id)
        job_states.put_back(session.scalar(select(DryRun).where(DryRun.submission_id == submission_id)))
        session.flush()
        session.refresh(submission, ["team", "dry_run"])
        return submission
