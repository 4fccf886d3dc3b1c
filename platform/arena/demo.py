"""The demo tournament: every sample submission on a synthetic dataset, from nothing."""

import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from sqlalchemy import select

from arena import REPO_ROOT, base_image, db
from arena.archive import pack
from arena.config import Settings
from arena.dataset import store_dataset, synthesize
from arena.intake import submit
from arena.models import Dataset, Submission

SAMPLES = REPO_ROOT / "submissions" / "samples"
DEMO_DATASET = "demo"


def sample_folders() -> list[Path]:
    return sorted(p for p in SAMPLES.iterdir() if (p / "metadata.json").is_file())


def _already_there(settings: Settings, name: str) -> bool:
    with db.transaction(settings) as session:
        return session.scalar(select(Submission).where(Submission.name == name)) is not None


def run_demo(settings: Settings, images: int, console: Console, run: Callable[[str | None], object]) -> None:
    base_image.build(settings, say=console.print)
    db.upgrade(settings)
    with db.transaction(settings) as session:
        have_dataset = session.scalar(select(Dataset).where(Dataset.name == DEMO_DATASET)) is not None
    if not have_dataset:
        store_dataset(settings, DEMO_DATASET, synthesize(images))
        console.print(f"synthetic dataset {DEMO_DATASET!r}: {images} images")
    with tempfile.TemporaryDirectory() as scratch:
        for folder in sample_folders():
            if _already_there(settings, folder.name):
                continue
            submission = submit(settings, pack(folder, Path(scratch) / f"{folder.name}.tar.gz"), team=f"team-{folder.name}")
            console.print(f"submitted {submission.name} ({submission.kind.value}): {submission.status.value}")
    run(DEMO_DATASET)
