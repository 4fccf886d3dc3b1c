"""The real-model study: EfficientNet-Lite attacks and defenses on real ImageNet photos,
in the manner of the 2017 median-filter defense study (misclassification with and without
a 3x3 median filter, against white-box and transfer attacks, and against epsilon).

Running it is an ordinary tournament (resumable: ``arena run`` semantics, only missing
work runs); the report is computed from the stored per-image results.
"""

import tempfile
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from sqlalchemy import select

from arena import REPO_ROOT, db
from arena.competition import rounds
from arena.config import Settings
from arena.data.dataset import DatasetError, find_dataset, read_photo_folder, store_dataset
from arena.intake.metadata import Metadata, MetadataError
from arena.models import Dataset, SubmissionKind
from arena.tools import base_image
from arena.tools.demo import sample_folders, submit_samples

REAL_SAMPLES = REPO_ROOT / "submissions" / "real"
DEFAULT_PHOTOS = REPO_ROOT.parent / "shared" / "datasets" / "imagenet-sample-1000"
#: Every submission's dry run, determinism probe included, runs the first batch twice; the
#: three-model attacks take about 2 s per photo on one CPU, so batches of 20 keep the eight
#: attacks' intake to minutes, where batches of 100 would take half an hour.
STUDY_BATCH = 20


def dataset_name(images: int) -> str:
    return f"imagenet-{images}"


def _spread_labels(photos: Path, images: int, scratch: Path) -> Path:
    """A labels CSV of ``images`` photos spread evenly over the classes (one per class in the sample)."""
    lines = (photos / "labels.csv").read_text().splitlines()
    rows = lines[1:]
    if images > len(rows):
        raise DatasetError(f"{photos} holds {len(rows)} photos, fewer than the {images} asked for", [])
    step = len(rows) / images
    chosen = [rows[int(k * step)] for k in range(images)]
    path = scratch / "labels.csv"
    path.write_text("\n".join([lines[0], *chosen]) + "\n")
    return path


def import_photos(settings: Settings, photos: Path, images: int, console: Console) -> str:
    name = dataset_name(images)
    with db.transaction(settings) as session:
        if session.scalar(select(Dataset).where(Dataset.name == name)):
            return name
    with tempfile.TemporaryDirectory() as scratch:
        rows = read_photo_folder(photos / "images", _spread_labels(photos, images, Path(scratch)))
    store_dataset(settings, name, rows, batch_size=STUDY_BATCH)
    console.print(f"imported {images} photos as dataset {name!r}")
    return name


def _check_defense(folder: Path) -> None:
    """Before anything is built: an extra defense must be a defense submission folder, read as
    the intake reads one."""
    if not (folder / "metadata.json").is_file():
        raise MetadataError(f"--defense {folder}: not a submission folder (no metadata.json in it)")
    try:
        kind = Metadata.read(folder).type
    except MetadataError as exc:
        raise MetadataError(f"--defense {folder}: {exc}") from None
    if kind != SubmissionKind.DEFENSE:
        raise MetadataError(f"--defense {folder}: its metadata.json says type {kind.value!r}, not 'defense'")


def run_study(settings: Settings, images: int, photos: Path, console: Console, run: Callable[[str | None], object],
              defenses: tuple[Path, ...] = ()) -> str:
    """Everything up to a finished tournament; returns the dataset name. ``defenses`` are extra
    defense submission folders entered beside the samples: where adversarially trained weights
    exist on disk, a folder that loads them puts them in the same report."""
    for folder in defenses:
        _check_defense(folder)
    if not (photos / "labels.csv").is_file():
        raise DatasetError(
            f"the real-model study needs the ImageNet sample photos at {photos} (labels.csv and images/); "
            "pass --photos PATH", []
        )
    base_image.build(settings, ["python", "torch"], say=console.print)
    db.upgrade(settings)
    name = import_photos(settings, photos, images, console)
    with db.transaction(settings) as session:
        round_name = rounds.ensure(session, settings, find_dataset(session, name)).name
    submit_samples(settings, [*sample_folders(REAL_SAMPLES), *defenses], console, round_name, team="arena-samples")
    run(name)
    return name
