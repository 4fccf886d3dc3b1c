"""Taking in a submission: unpack safely, check metadata, dedup, pin its images, dry-run,
accept or reject.

Each step fails with a message that names the problem; nothing is stored unless the
archive unpacked safely and its metadata is sound. A submission that fails its dry run
is kept as ``rejected`` with the report, so the team can see why.
"""

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from arena.admin import teams
from arena.competition import entries, quotas, rounds
from arena.config import Settings
from arena.db import transaction
from arena.errors import InputError, PlatformError
from arena.execution import packing
from arena.intake.archive import extract, tree_sha256
from arena.intake.dry_run import ValidationReport, sample_batch, validate
from arena.intake.metadata import Metadata
from arena.models import Round, Submission, SubmissionStatus, Team, name_key
from arena.sandbox import pinning
from arena.sandbox.containers import SandboxError


class SubmissionError(InputError):
    """The submission cannot be taken; the message says why."""


class DryRunUnavailable(PlatformError):
    """The dry run could not start for the platform's own reason (the engine, the storage):
    nothing is stored and no quota is used."""

    public = ("the dry run could not start for a reason of the platform's (the organizers have the details in "
              "its log); nothing was stored and no quota was used: upload again later")


def _check_allowed(settings: Settings, metadata: Metadata) -> None:
    if settings.allowed_images and metadata.container not in settings.allowed_images:
        allowed = ", ".join(settings.allowed_images)
        raise SubmissionError(f"container {metadata.container!r} is not allowed here (allowed: {allowed})")


def _refuse_duplicate(session: Session, sha256: str, name: str) -> None:
    same = session.scalar(select(Submission).where(Submission.sha256 == sha256))
    if same:
        raise SubmissionError(f"this code was already submitted as {same.name!r} (status {same.status.value})")
    if session.scalar(select(Submission).where(Submission.name == name)):
        raise SubmissionError(f"a submission named {name!r} exists; choose another with --name")


def _register(settings: Settings, sha256: str, name: str, team: str, metadata: Metadata, round_id: int) -> int:
    """Store the submission as validating before anything else is done with its code.

    Two uploads of the same code (or name, or a new team's first two) may race: the unique
    constraints decide, and the loser is told what the winner took, as if it had come
    second; a race over the new team alone is simply tried again, the team now existing."""
    try:
        return _insert(settings, sha256, name, team, metadata, round_id)
    except IntegrityError:
        with transaction(settings) as session:
            _refuse_duplicate(session, sha256, name)
        return _insert(settings, sha256, name, team, metadata, round_id)


def _insert(settings: Settings, sha256: str, name: str, team: str, metadata: Metadata, round_id: int) -> int:
    """The row and its round entry, after the deadline and the team's quota are checked in
    the same transaction (the team's row locked on PostgreSQL, so two uploads at once
    cannot both take the last one; SQLite writes one transaction at a time anyway)."""
    with transaction(settings) as session:
        _refuse_duplicate(session, sha256, name)
        round_ = session.get_one(Round, round_id)
        owner = (session.scalar(select(Team).where(Team.name_key == name_key(team)).with_for_update())
                 or Team(name=teams.team_name(team)))
        rounds.refuse_unless_open(round_)
        if owner.id is not None:
            quotas.check(session, round_, owner, metadata.type)
        submission = Submission(team=owner, name=name, kind=metadata.type, sha256=sha256, meta=metadata.model_dump())
        session.add(submission)
        entries.enter(session, round_, submission)
        session.flush()
        return submission.id


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


def _install(settings: Settings, root: Path, metadata: Metadata, sha256: str) -> Path:
    """Move the tree to its permanent, content-addressed place, readable by the sandbox user."""
    target = settings.submissions_dir / sha256
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(root), target)
    for path in [target, *target.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else (path.stat().st_mode & 0o777) | 0o444)
    (target / metadata.entry_point).chmod(0o755)  # zip files often lose the executable bit
    return target


def submit(settings: Settings, archive: Path, team: str, name: str | None = None,
           round_name: str | None = None) -> Submission:
    """Take an archive into a round (the one open now, unless named) and dry-run it under the
    round's epsilons and time limit; return the stored submission, accepted or rejected."""
    with transaction(settings) as session:
        round_ = rounds.for_uploads(session, round_name)
        round_id, settings = round_.id, rounds.run_settings(settings, round_)
        images = sample_batch(session)
    name = name or _default_name(archive)
    with unpacked(settings, archive) as (root, metadata, sha256):
        _check_allowed(settings, metadata)
        submission_id = _register(settings, sha256, name, team, metadata, round_id)
        try:
            pins = pinning.pin(metadata.model_dump())
            code = metadata.code(_install(settings, root, metadata, sha256), pins)
            report = validate(settings, code, images)
        except SandboxError as exc:
            _forget(settings, submission_id)
            raise DryRunUnavailable(f"the dry run could not start, nothing was stored: {exc}") from None
        except BaseException:
            _forget(settings, submission_id)
            raise
    return _record(settings, submission_id, report, pins)


def store_dry_run(settings: Settings, submission: Submission, report: ValidationReport, pins: dict[str, str]) -> None:
    """What a dry run fixes for the submission's runs: the images it ran, their report, the
    determinism flag, and the images per container run."""
    submission.container_image, submission.container_gpu_image = pins["container"], pins.get("container_gpu")
    submission.validation_report = report.model_dump()
    submission.nondeterministic_share = report.determinism.share if report.determinism else None
    submission.pack_images = packing.pack_images(settings, submission.validation_report)


def _record(settings: Settings, submission_id: int, report: ValidationReport, pins: dict[str, str]) -> Submission:
    with transaction(settings) as session:
        submission = session.get(Submission, submission_id)
        submission.status = SubmissionStatus.ACCEPTED if report.passed else SubmissionStatus.REJECTED
        submission.reason = None if report.passed else "; ".join(report.problems) or "the dry run failed"
        store_dry_run(settings, submission, report, pins)
        session.flush()
        session.refresh(submission, ["team"])
        return submission
