"""Running a pack of planned jobs in one container and recording what came of each job.

Every executor, in-process or on a worker, calls ``run_pack``: claim the jobs
(``leases``), load the claimed jobs' inputs, make the submission's code and image present
on this host, run the container once over all of them, then store each job's results in one
transaction, only for the jobs that still carry this run's fencing token. Only the loading
and the storing hold a database session: fetching code, pulling an image and running take
minutes, and happen between transactions, under the leases' heartbeat. A pack is jobs
of one submission (and one epsilon, for attacks); a pack of one job is the plain case.
Unique constraints and primary keys refuse anything stored twice, whatever happens.

What a failed pack keeps: when the container crashes or times out, each job whose images
all got an output (attacks) or an answer (defenses) is kept; the others are split in two
and run again, so a bad batch ends up alone and only its own results carry the failure.
A platform failure (no engine, the pinned image missing) marks the jobs ``error``: planned again,
up to ``settings.max_attempts`` times.
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Generic, Protocol, TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from arena import job_states
from arena.competition import rounds
from arena.config import Settings
from arena.data import logs
from arena.data.objects import StoreError
from arena.db import bulk_insert, retry_while_unreachable, transaction
from arena.execution.leases import Claim, claim, failed_on_the_platform, heartbeat, still_held
from arena.models import (
    AdversarialImage,
    AttackJob,
    ClassificationProblem,
    DefenseJob,
    Image,
    JobAttempt,
    JobKind,
    Submission,
    utcnow,
)
from arena.results import answers
from arena.sandbox import pinning
from arena.sandbox.attack_run import CleanInput, execute_attack
from arena.sandbox.code import StoredSubmission, SubmissionCode
from arena.sandbox.containers import RunResult, SandboxError
from arena.sandbox.defense_run import DefenseInput, execute_defense


@dataclass(frozen=True)
class Pack:
    """Jobs of one kind and one submission (and epsilon) to run in one container."""

    kind: JobKind
    job_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", JobKind(self.kind))  # "attack" as sent through the broker

    def halves(self) -> list["Pack"]:
        """Two packs of half the jobs each; a pack of one job cannot be split and stays whole."""
        if len(self.job_ids) < 2:
            return [self]
        middle = len(self.job_ids) // 2
        return [Pack(self.kind, self.job_ids[:middle]), Pack(self.kind, self.job_ids[middle:])]

    def only(self, job_ids: set[int]) -> "Pack":
        return Pack(self.kind, tuple(j for j in self.job_ids if j in job_ids))


@dataclass
class PackResult:
    """What a pack run left: jobs finished, packs to run again, a platform error if any."""

    finished: int = 0
    container_runs: int = 0
    again: list[Pack] = field(default_factory=list)
    platform_error: str | None = None
    taken: bool = True  # False: it claimed none of its jobs (done, held elsewhere, or this worker drained)


class Outcome(Protocol):
    """What an attack or defense run returns: the container's result and the problems to tell the team."""

    run: RunResult
    problems: list[str]
    notes: list[str]


O = TypeVar("O", bound=Outcome)


@dataclass
class JobShare:
    """One job's part of a pack's outcome: the rows to store (plain dicts, inserted in bulk)
    and whether they are complete."""

    rows: list[dict]
    complete: bool


@dataclass
class LoadedPack(Generic[O]):
    """A claimed pack's inputs, read: whose code it runs, the container run to make with that
    code, its image count, and how its outcome is shared out among the jobs."""

    submission: StoredSubmission
    execute: Callable[[SubmissionCode], O]
    images: int
    share: Callable[[O], dict[int, JobShare]]
    time_limit: float  # the container's, under the round's settings


def submission_code(settings: Settings, submission: StoredSubmission) -> SubmissionCode:
    """The submission's code, present on this host, with its pinned images. The image this
    host runs must be pinned and on this engine: a pin intake could not make (a submission
    taken in before pinning, a ``container_gpu`` the intake engine lacked) is made now, from
    this engine, and stored (the first runner's stands); a pinned image this engine lacks is
    pulled by its registry digest, or fails the run with a platform error saying so, and the
    tag is never run instead. Called with no transaction open: the code's download, a push
    of a late pin and a pull may take minutes."""
    code = SubmissionCode.stored(settings, submission, submission.pins)
    field = code.image_field(settings.sandbox.gpu)
    if field not in code.pins:
        pin = pinning.resolve(submission.meta[field], settings.registry)  # with a registry, a push
        code = replace(code, pins={**code.pins, field: _pin_late(settings, submission.id, field, pin)})
    pinning.require(code.image(settings.sandbox.gpu), code.tag(settings.sandbox.gpu), submission.name)
    return code


@retry_while_unreachable
def _pin_late(settings: Settings, submission_id: int, field: str, pin: str) -> str:
    """Store ``pin`` for the submission's ``field`` unless another runner stored one first;
    the pin that stands."""
    column = getattr(Submission, f"{field}_image")
    with transaction(settings) as session:
        session.execute(update(Submission).where(Submission.id == submission_id, column.is_(None)).values({column: pin}))
        return session.scalar(select(column).where(Submission.id == submission_id))


# --- loading a pack and sharing its outcome out among its jobs -------------------------


def _load_attack_pack(settings: Settings, session: Session, jobs: list[AttackJob], naming_key: bytes) -> LoadedPack:
    job_of = {}
    inputs = []
    for job in jobs:
        for image in job.batch.images:
            inputs.append(CleanInput(image.id, image.sha256, image.target_class, image.name))
            job_of[image.id] = job.id

    def share(outcome) -> dict[int, JobShare]:
        shares = {job.id: JobShare([], True) for job in jobs}
        for result in outcome.results:
            piece = shares[job_of[result.image_id]]
            piece.rows.append(dict(attack_job_id=job_of[result.image_id], **asdict(result)))
            piece.complete &= not result.missing
        return shares

    return LoadedPack(StoredSubmission.of(jobs[0].submission),
                      lambda code: execute_attack(settings, code, inputs, jobs[0].epsilon, naming_key), len(inputs),
                      share, settings.time_limit(len(inputs)))


def _defense_inputs(session: Session, jobs: list[DefenseJob]) -> list[list[tuple[int, str, str, int | None]]]:
    """For each job, (image id, image name, sha256 to show, adversarial image id) of every
    image it covers; two queries for the whole pack (clean batches, attack outputs) rather
    than one per job."""
    clean = {job.batch_id for job in jobs if job.attack_job_id is None}
    attacked = {job.attack_job_id for job in jobs if job.attack_job_id is not None}
    of_batch, of_attack = defaultdict(list), defaultdict(list)
    if clean:
        query = (select(Image.batch_id, Image.id, Image.name, Image.sha256)
                 .where(Image.batch_id.in_(clean)).order_by(Image.id))
        for batch_id, image_id, name, sha256 in session.execute(query):
            of_batch[batch_id].append((image_id, name, sha256, None))
    if attacked:
        query = (
            select(AdversarialImage.attack_job_id, AdversarialImage.image_id, Image.name, AdversarialImage.sha256,
                   AdversarialImage.id)
            .join(Image, AdversarialImage.image_id == Image.id)
            .where(AdversarialImage.attack_job_id.in_(attacked))
            .order_by(AdversarialImage.id)
        )
        for attack_job_id, image_id, name, sha256, adversarial_id in session.execute(query):
            of_attack[attack_job_id].append((image_id, name, sha256, adversarial_id))
    return [of_batch[job.batch_id] if job.attack_job_id is None else of_attack[job.attack_job_id] for job in jobs]


def _load_defense_pack(settings: Settings, session: Session, jobs: list[DefenseJob], naming_key: bytes) -> LoadedPack:
    defense_id = jobs[0].submission_id
    inputs, origin = [], {}  # origin: input key -> (job id, image id, adversarial image id)
    for job, covered in zip(jobs, _defense_inputs(session, jobs)):
        for image_id, name, sha256, adversarial_id in covered:
            key = len(inputs)
            inputs.append(DefenseInput(key, sha256, name))
            origin[key] = (job.id, image_id, adversarial_id)

    def share(outcome) -> dict[int, JobShare]:
        shares = {job.id: JobShare([], True) for job in jobs}
        for key, answer in outcome.answers.items():
            job_id, image_id, adversarial_id = origin[key]
            shares[job_id].rows.append(
                {"defense_job_id": job_id, "defense_id": defense_id, "image_id": image_id,
                 "adversarial_image_id": adversarial_id, "label": answer.label, "problem": answer.problem}
            )
            shares[job_id].complete &= answer.problem is not ClassificationProblem.MISSING
        return shares

    return LoadedPack(StoredSubmission.of(jobs[0].submission), lambda code: execute_defense(settings, code, inputs, naming_key),
                      len(inputs), share, settings.time_limit(len(inputs)))


LOADERS = {JobKind.ATTACK: _load_attack_pack, JobKind.DEFENSE: _load_defense_pack}


@retry_while_unreachable
def _load(settings: Settings, pack: Pack) -> LoadedPack:
    """Read the claimed jobs' inputs, to run under their round's time limit and naming key."""
    with transaction(settings) as session:
        jobs = [session.get(pack.kind.job_class, job_id) for job_id in pack.job_ids]
        round_ = rounds.of_dataset(session, jobs[0].batch.dataset_id)
        return LOADERS[pack.kind](rounds.run_settings(settings, round_), session, jobs, rounds.naming_key(round_))


@retry_while_unreachable
def _started(settings: Settings, claims: dict[int, Claim], images: int, image: str) -> None:
    """Record on the attempts the run's image count (packing learns each submission's time per
    image from it) and the image it runs, once that image is on this engine."""
    with transaction(settings) as session:
        session.execute(update(JobAttempt).where(JobAttempt.id.in_([held.attempt_id for held in claims.values()]))
                        .values(images=images, container_image=image))


# --- running a pack ---------------------------------------------------------------------


def run_pack(settings: Settings, pack: Pack, worker_id: int | None = None) -> PackResult:
    """Claim (for the worker ``worker_id``), load, prepare, run once, store; jobs someone else
    holds are left to them.

    The leases are renewed from the claim to the end of the run, in two windows, each bounded
    so that a stuck host loses its jobs to the reaper: while the pack is prepared (its inputs
    read, its code fetched, its image pinned and pulled, each as long as the network makes
    it), for ``settings.prepare_seconds``; then while its container runs, for its time limit
    plus a lease. Two plain heartbeats rather than one whose end moves: the container's limit
    is known only once the inputs are read, and between the two the lease the first renewed
    last still has three quarters of a lease to run."""
    claims = claim(settings, pack.kind, pack.job_ids, worker_id)
    if not claims:
        return PackResult(taken=False)  # done already, running elsewhere, or this worker drained
    pack = pack.only(set(claims))
    tokens = {job_id: held.token for job_id, held in claims.items()}
    try:
        with heartbeat(settings, pack.kind.job_class, tokens, settings.prepare_seconds):
            loaded = _load(settings, pack)
            code = submission_code(settings, loaded.submission)  # fails when the image or the code cannot be had
            _started(settings, claims, loaded.images, code.image(settings.sandbox.gpu))
        with heartbeat(settings, pack.kind.job_class, tokens, loaded.time_limit + settings.lease_seconds):
            outcome = loaded.execute(code)
        log = logs.keep(settings, outcome.run.log)  # before the rows that name it
    except (SandboxError, StoreError) as exc:  # the platform's failure: the jobs run again, none is blamed
        failed_on_the_platform(settings, pack.kind.job_class, claims, exc)
        return PackResult(container_runs=1, platform_error=f"{pack.kind} jobs {list(pack.job_ids)}: {exc}")
    shares = loaded.share(outcome)
    retry = [] if outcome.run.succeeded or len(pack.job_ids) == 1 else [j for j in pack.job_ids if not shares[j].complete]
    stored = _store(settings, pack, claims, outcome, shares, retry, log)
    return PackResult(finished=stored, container_runs=1, again=pack.only(set(retry)).halves() if retry else [])


def finish_attempt(attempt: JobAttempt, run: RunResult, problems: list[str], log: logs.KeptLog | None) -> None:
    """An attempt ended by its container run (a query job's: its attack's): the run's outcome,
    ``problems`` above the log's tail, and the full log kept in the store."""
    attempt.ended_at = utcnow()
    attempt.seconds = run.seconds
    attempt.exit_code = run.exit_code
    attempt.timed_out = run.timed_out
    attempt.killed_reason = run.killed_reason
    attempt.log_excerpt = "".join(f"[arena] {p}\n" for p in problems) + run.log_tail
    attempt.log_sha256, attempt.log_size = (log.sha256, log.size) if log else (None, None)


@retry_while_unreachable
def _store(settings: Settings, pack: Pack, claims: dict[int, Claim], outcome: Outcome, shares: dict[int, JobShare],
           retry: list[int], log: logs.KeptLog | None) -> int:
    """Every kept job's rows, attempt and status in one transaction, each only while the job
    still carries our token, and for defense jobs their counts added to the tallies; return
    how many jobs were stored."""
    packed = [f"ran in a pack of {len(pack.job_ids)} jobs"] if len(pack.job_ids) > 1 else []
    kept, rows = [], []
    with transaction(settings) as session:
        for job_id, piece in shares.items():
            held = claims[job_id]
            attempt = session.get(JobAttempt, held.attempt_id)
            job = still_held(session, pack.kind.job_class, job_id, held.token)
            if job is None:
                finish_attempt(attempt, outcome.run, [*packed, "another attempt took this job over: results dropped"], log)
            elif job_id in retry:
                finish_attempt(attempt, outcome.run, [*packed, "the pack failed before this job was complete: it runs again in a smaller pack"],
                                log)
                job_states.put_back(job)
            else:
                kept.append(job_id)
                rows += piece.rows
                finish_attempt(attempt, outcome.run, packed + outcome.problems + outcome.notes, log)
                job_states.finish(job)
        if pack.kind is JobKind.DEFENSE:
            answers.store(session, rows)
        else:
            bulk_insert(session, AdversarialImage.__table__, rows)
    return len(kept)
