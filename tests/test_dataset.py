import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from arena.data.dataset import (
    DatasetError,
    assign_target_class,
    read_competition_csv,
    read_photo_folder,
    store_dataset,
    synthesize,
)
from arena.data.images import encode_png
from arena.db import transaction
from arena.models import Batch, Dataset, Image


def _png(folder, name, size=299):
    (folder / f"{name}.png").write_bytes(encode_png(np.full((size, size, 3), 7, dtype=np.uint8)))


def test_competition_csv_imports_in_batches(settings, tmp_path):
    folder = tmp_path / "dev"
    folder.mkdir()
    lines = ["ImageId,URL,x1,y1,x2,y2,TrueLabel,TargetClass"]
    for i in range(5):
        _png(folder, f"img{i}")
        lines.append(f"img{i},http://x,0,0,1,1,{i + 1},{'' if i == 4 else 500}")
    (folder / "dev.csv").write_text("\n".join(lines) + "\n")
    rows = read_competition_csv(folder / "dev.csv", folder)
    store_dataset(settings, "dev", rows, batch_size=2)
    with transaction(settings) as session:
        images = session.scalars(select(Image).order_by(Image.name)).all()
        assert [i.true_label for i in images] == [1, 2, 3, 4, 5]
        assert images[0].target_class == 500
        assert images[4].target_class == assign_target_class("img4", 5, 0) != 5
        assert session.scalar(select(func.count(Batch.id))) == 3


def test_every_bad_row_is_listed_and_nothing_is_imported(settings, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    _png(folder, "good")
    _png(folder, "small", size=100)
    _png(folder, "dup")
    (folder / "corrupt.png").write_bytes(b"\x89PNG broken")
    (folder / "dev.csv").write_text(
        "ImageId,TrueLabel,TargetClass\n"
        "good,1,2\n"
        "missing,3,4\n"
        "small,5,6\n"
        "dup,7,8\n"
        "dup,7,8\n"
        "zero,0,2\n"
        "corrupt,9,10\n"
        "good2,1001,5\n"
    )
    with pytest.raises(DatasetError) as error:
        read_competition_csv(folder / "dev.csv", folder)
    message = str(error.value)
    for expected in [
        "row 3 (missing): image file missing.png is missing",
        "row 4 (small): small.png: size 100x100, expected 299x299",
        "row 5 (dup): duplicate ImageId",
        "row 6 (dup): duplicate ImageId",
        "row 7 (zero): TrueLabel '0' is outside 1..1000",
        "row 8 (corrupt): corrupt.png: corrupt image",
        "row 9 (good2): TrueLabel '1001' is outside 1..1000",
    ]:
        assert expected in message
    with transaction(settings) as session:
        assert session.scalar(select(func.count(Dataset.id))) == 0


def test_photo_folder_is_cropped_and_resized(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    PILImage.new("RGB", (640, 480), (200, 10, 10)).save(folder / "n01_cat.JPEG")
    PILImage.new("RGB", (300, 500), (10, 200, 10)).save(folder / "n02_dog.JPEG")
    (folder / "labels.csv").write_text("filename,synset,class_name,class_index\nn01_cat.JPEG,n01,cat,0\nn02_dog.JPEG,n02,dog,999\n")
    rows = read_photo_folder(folder, folder / "labels.csv")
    assert [(r.name, r.true_label) for r in rows] == [("n01_cat", 1), ("n02_dog", 1000)]
    assert all(r.target_class != r.true_label for r in rows)
    pixels = np.asarray(PILImage.open(io.BytesIO(rows[0].png)))
    assert pixels.shape == (299, 299, 3)


def test_photo_folder_problems_are_listed(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "broken.JPEG").write_bytes(b"not a jpeg")
    (folder / "labels.csv").write_text("filename,class_index\nbroken.JPEG,1\nabsent.JPEG,2\nfine.JPEG,1000\n")
    with pytest.raises(DatasetError) as error:
        read_photo_folder(folder, folder / "labels.csv")
    message = str(error.value)
    assert "row 2 (broken.JPEG): corrupt image" in message
    assert "row 3 (absent.JPEG): file is missing" in message
    assert "row 4 (fine.JPEG): class_index '1000' is outside 1..1000 after adding 1" in message


def test_synthetic_sets_are_reproducible_and_a_name_is_never_reused(settings):
    first, second = synthesize(3, seed=5), synthesize(3, seed=5)
    assert [r.png for r in first] == [r.png for r in second]
    store_dataset(settings, "s", first)
    with pytest.raises(DatasetError, match="already exists"):
        store_dataset(settings, "s", second)


def test_target_class_is_never_the_true_label():
    for label in (1, 500, 1000):
        targets = {assign_target_class(f"img{i}", label, seed=1) for i in range(2000)}
        assert label not in targets and targets <= set(range(1, 1001))


IMAGENET_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "imagenet-sample-1000"


@pytest.mark.skipif(not IMAGENET_SAMPLE.is_dir(), reason="../shared/datasets/imagenet-sample-1000 is not on this machine")
def test_real_imagenet_photos_import(settings, tmp_path):
    lines = (IMAGENET_SAMPLE / "labels.csv").read_text().splitlines()
    (tmp_path / "labels.csv").write_text("\n".join(lines[:21]) + "\n")
    rows = read_photo_folder(IMAGENET_SAMPLE / "images", tmp_path / "labels.csv")
    expected = {Path(line.split(",")[0]).stem: int(line.split(",")[-1]) + 1 for line in lines[1:21]}
    assert {r.name: r.true_label for r in rows} == expected
    store_dataset(settings, "imagenet20", rows, batch_size=10)
    with transaction(settings) as session:
        assert session.scalar(select(func.count(Batch.id))) == 2
    for row in rows:
        with PILImage.open(io.BytesIO(row.png)) as image:
            assert image.size == (299, 299) and image.mode == "RGB"
