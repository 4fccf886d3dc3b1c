"""The dry run a submission must pass before it enters the tournament.

It runs the code once, exactly as the tournament will, on the dataset's first batch (at
the largest epsilon for attacks) and reports everything a team needs to fix: exit code,
time-out, missing or ill-sized outputs, an unparsable result.csv, and the log tail.
"""

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.config import Settings
from arena.data.dataset import DatasetError
from arena.intake.metadata import SubmissionCode
from arena.models import Batch, Image
from arena.sandbox.attack_run import CleanInput, execute_attack
from arena.sandbox.containers import RunResult
from arena.sandbox.defense_run import DefenseInput, execute_defense


class ValidationReport(BaseModel):
    """What the dry run found; stored as JSON with the submission and served by the API."""

    passed: bool
    images: int
    seconds: float
    time_limit: float
    exit_code: int | None
    timed_out: bool
    problems: list[str] = []  # any of these fails the dry run
    notes: list[str] = []  # accepted as 2017 accepted it, said all the same (none in older reports)
    log_tail: str = ""


def sample_batch(session: Session) -> list[Image]:
    """The first batch of the first dataset: the same sample for every submission."""
    batch = session.scalar(select(Batch).order_by(Batch.dataset_id, Batch.index).limit(1))
    if batch is None:
        raise DatasetError("validation needs a dataset: run `arena dataset import` or `arena dataset synth` first", [])
    return list(batch.images)


def _report(settings: Settings, run: RunResult, images: int, problems: list[str], notes: list[str]) -> ValidationReport:
    return ValidationReport(
        passed=run.succeeded and not problems,
        images=images,
        seconds=round(run.seconds, 2),
        time_limit=settings.time_limit(images),
        exit_code=run.exit_code,
        timed_out=run.timed_out,
        problems=problems,
        notes=notes,
        log_tail=run.log_tail,
    )


def validate(settings: Settings, code: SubmissionCode, images: list[Image]) -> ValidationReport:
    if code.metadata.type == "defense":
        outcome = execute_defense(settings, code, [DefenseInput(i.id, i.sha256) for i in images])
    else:
        inputs = [CleanInput(i.id, i.sha256, i.target_class) for i in images]
        outcome = execute_attack(settings, code, inputs, max(settings.epsilons))
    return _report(settings, outcome.run, len(images), outcome.problems, outcome.notes)
