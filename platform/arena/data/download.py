"""A dataset as the 2017 development toolkit laid it out, for teams to download.

One zip holds ``dev_dataset.csv`` (ImageId, TrueLabel, TargetClass) and ``images/ImageId.png``,
which ``arena dataset import`` and the 2017 tools read back as they are. A stored dataset
never changes, so the archive is built once, on first request, and kept beside the image
store; PNGs are stored, not compressed again.
"""

import csv
import io
import os
import tempfile
import zipfile
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.config import Settings
from arena.data.images import image_store
from arena.models import Dataset, Image

CSV_NAME = "dev_dataset.csv"


def archive(settings: Settings, session: Session, dataset: Dataset) -> Path:
    """The dataset's zip, built now if it was never asked for."""
    target = settings.data_dir / "downloads" / f"dataset-{dataset.id}.zip"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    images = session.scalars(select(Image).where(Image.dataset_id == dataset.id).order_by(Image.name)).all()
    store = image_store(settings)
    handle, scratch = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as bundle:
            bundle.writestr(CSV_NAME, _labels_csv(images))
            for image in images:
                bundle.write(store.path(image.sha256), f"images/{image.name}.png")
        os.replace(scratch, target)  # two first requests at once both build; the last rename wins, equal
    finally:
        Path(scratch).unlink(missing_ok=True)
    return target


def _labels_csv(images: list[Image]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["ImageId", "TrueLabel", "TargetClass"])
    writer.writerows((image.name, image.true_label, image.target_class) for image in images)
    return text.getvalue()
