"""The demo tournament: every sample submission on a synthetic dataset, from nothing."""

import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from sqlalchemy import select

from arena import REPO_ROOT, db
from arena.competition import rounds
from arena.config import Settings
from arena.data.dataset import find_dataset, store_dataset, synthesize
from arena.execution.checking import submit
from arena.intake.archive import pack
from arena.models import Dataset, Submission, SubmissionStatus
from arena.tools import base_image

SAMPLES = REPO_ROOT / "submissions" / "samples"
DEMO_DATASET = "demo"
#: The query track's rules in the demo's round: every query costs a round trip through the
#: engine, so the 2018 challenge's 1,000 queries per image on every image would make the
#: query attacks most of the demo's time; a tenth of it, on the first batch, shows the track.
DEMO_QUERY_BUDGET = 100
DEMO_QUERY_IMAGES = 1


def sample_folders(root: Path = SAMPLES) -> list[Path]:
    return sorted(p for p in root.iterdir() if (p / "metadata.json").is_file())


def _carried_if_there(settings: Settings, name: str, round_name: str) -> bool:
    """Whether the sample was submitted before; if so it is carried into the round (a no-op
    when it is entered already), so a demo or study resumes into any round."""
    with db.transaction(settings) as session:
        submission = session.scalar(select(Submission).where(Submission.name == name))
        if submission is not None and submission.status is SubmissionStatus.ACCEPTED:
            rounds.carry(session, rounds.find(session, round_name), [submission])
        return submission is not None


def submit_samples(settings: Settings, folders: list[Path], console: Console, round_name: str,
                   team: str | None = None) -> None:
    """Submit each sample folder into the round through the normal intake, or carry it there
    if it was submitted before; each goes to ``team``, or to a team of its own."""
    with tempfile.TemporaryDirectory() as scratch:
        for folder in folders:
            if _carried_if_there(settings, folder.name, round_name):
                continue
            with console.status(f"dry run of {folder.name}..."):
                archive = pack(folder, Path(scratch) / f"{folder.name}.tar.gz")
                submission = submit(settings, archive, team=team or f"team-{folder.name}", round_name=round_name)
            console.print(f"submitted {submission.name} ({submission.kind.value}): {submission.status.value}")


def run_demo(settings: Settings, images: int, console: Console, run: Callable[[str | None], object]) -> None:
    base_image.build(settings, say=console.print)
    db.upgrade(settings)
    with db.transaction(settings) as session:
        have_dataset = session.scalar(select(Dataset).where(Dataset.name == DEMO_DATASET)) is not None
    if not have_dataset:
        store_dataset(settings, DEMO_DATASET, synthesize(images))
        console.print(f"synthetic dataset {DEMO_DATASET!r}: {images} images")
    with db.transaction(settings) as session:
        round_ = rounds.ensure(session, settings, find_dataset(session, DEMO_DATASET))
        round_.query_budget, round_.query_images = DEMO_QUERY_BUDGET, DEMO_QUERY_IMAGES
        round_name = round_.name
    submit_samples(settings, sample_folders(SAMPLES), console, round_name)
    run(DEMO_DATASET)
