"""A round's results bundle: everything needed to check and reproduce its figures, in one zip.

It holds the 2017 result files and per-image Parquet, and the query track's cells and
matrices where the round ran it: what ``export`` writes, and a ``manifest.json``
that pins what produced them: the round's settings, the dataset (a hash over every image's
name, label, target class and pixels' hash, and its batch size), every entered submission
with its code hash, container, pinned image ids and images per container run, and the
platform settings that shape a run (batching, limits). A published round never changes, so
its bundle is built once and kept. The zip is a function of its contents alone (every
member with one fixed date and mode), so two installations holding the same results write
the same bytes, and a bundle's sha256 can be compared across them.

Once the round is published, and never before (a live round's key is a secret: with it, an
input's name could be matched to an image), the manifest also carries the round's naming
key, the last thing another installation needs to give every container run the same input
names and so the same results (``tools.replay``, `arena round replay`).
"""

import hashlib
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arena.competition import entries
from arena.config import Settings
from arena.data.objects import store
from arena.models import Entry, Image, Round, Submission, Visibility
from arena.results.export import export

MANIFEST = "manifest.json"
#: Every member's date: zip's earliest (a member's own would be the moment it was written).
MEMBER_DATE = (1980, 1, 1, 0, 0, 0)


def dataset_sha256(session: Session, dataset_id: int) -> str:
    """One hash for the whole dataset as scored: names, labels, target classes and pixels."""
    digest = hashlib.sha256()
    rows = session.execute(select(Image.name, Image.true_label, Image.target_class, Image.sha256)
                           .where(Image.dataset_id == dataset_id).order_by(Image.name))
    for row in rows:
        digest.update((",".join(map(str, row)) + "\n").encode())
    return digest.hexdigest()


def manifest(session: Session, settings: Settings, round_: Round) -> dict:
    counting = set(entries.counting(session, round_.dataset_id))
    entered = session.execute(
        select(Submission, Entry.carried).join(Entry, Entry.submission_id == Submission.id)
        .where(Entry.round_id == round_.id).order_by(Submission.id)
    ).all()
    return {
        "round": {"name": round_.name, "epsilons": round_.epsilons, "eps_schedule": round_.eps_schedule.value,
                  "seconds_per_image": round_.seconds_per_image,
                  "opens_at": _moment(round_.opens_at), "closes_at": _moment(round_.closes_at),
                  "visibility": round_.visibility.value, "published_at": _moment(round_.published_at),
                  "naming_key": _replay_key(round_), "query_budget": round_.query_budget,
                  "query_top_k": round_.query_top_k, "query_images": round_.query_images},
        "dataset": {"name": round_.dataset.name, "images": _image_count(session, round_.dataset_id),
                    "batch_size": batch_size(session, round_.dataset_id),
                    "sha256": dataset_sha256(session, round_.dataset_id)},
        "submissions": [
            {"name": s.name, "team": s.team.name, "kind": s.kind.value, "code_sha256": s.sha256,
             "container": s.meta.get("container"), "container_gpu": s.meta.get("container_gpu"),
             "container_image": s.container_image, "container_gpu_image": s.container_gpu_image,
             "nondeterministic_share": s.nondeterministic_share,
             "status": s.status.value, "counting": s.id in counting, "baseline": s.baseline, "carried": carried,
             "pack_images": s.pack_images}
            for s, carried in entered
        ],
        "leaderboards": {"ranked": "every entered submission, counting or not (the public leaderboards rank each "
                                   "team's counting entry only: see each submission's counting flag); equal scores "
                                   "share a rank; a baseline takes none unless the round ranks baselines"},
        "settings": {"batch_size": settings.batch_size, "max_attempts": settings.max_attempts, "sandbox": settings.sandbox.model_dump()},
    }


def _replay_key(round_: Round) -> str | None:
    """The round's naming key, hex, for its bundle: only once it is published, and only when
    every result was named under it (not a round that had results before migration 0019)."""
    if round_.visibility is not Visibility.PUBLISHED or not round_.replayable:
        return None
    return round_.naming_key


def batch_size(session: Session, dataset_id: int) -> int:
    """The images of a full batch (only the last may hold fewer): with the names' order, what
    cuts the dataset into the batches packs are made of."""
    per_batch = select(func.count(Image.id).label("images")).where(Image.dataset_id == dataset_id).group_by(Image.batch_id)
    return session.scalar(select(func.max(per_batch.subquery().c.images)))


def _image_count(session: Session, dataset_id: int) -> int:
    return session.scalar(select(func.count(Image.id)).where(Image.dataset_id == dataset_id))


def _moment(value) -> str | None:
    return None if value is None else value.isoformat()


def write(session: Session, settings: Settings, round_: Round, target: Path) -> Path:
    """Write the bundle to ``target`` (a .zip)."""
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=settings.work_dir) as scratch:
        files = export(session, round_.dataset, Path(scratch))
        target.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(target, "w") as bundle:
            text = json.dumps(manifest(session, settings, round_), indent=2).encode()
            with bundle.open(_member(MANIFEST, len(text)), "w") as member:
                member.write(text)
            for path in files:
                with path.open("rb") as source, bundle.open(_member(path.name, path.stat().st_size), "w") as member:
                    shutil.copyfileobj(source, member)
    return target


def _member(name: str, size: int) -> zipfile.ZipInfo:
    """A member with the fixed date and a plain file's mode, deflated: nothing of when or
    where the bundle was written. Its size, known beforehand, lets zipfile choose ZIP64 for
    a member past 2 GiB (per-image Parquet of a large round)."""
    info = zipfile.ZipInfo(name, MEMBER_DATE)
    info.file_size = size
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def kept(session: Session, settings: Settings, round_: Round) -> Path:
    """The published round's bundle, built once and kept in the store (through a scratch file,
    so a half-written one is never served); an unpublished round's is built afresh each time (its results still
    change) into a scratch file the caller removes."""
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=settings.work_dir, suffix=".zip", delete=False)
    handle.close()
    if round_.visibility is not Visibility.PUBLISHED:
        return write(session, settings, round_, Path(handle.name))
    bundles, name = store(settings).bundles, kept_name(round_.id)
    if not bundles.exists(name):
        bundles.put_file(name, write(session, settings, round_, Path(handle.name)))
    Path(handle.name).unlink(missing_ok=True)
    return bundles.path(name)


def kept_name(round_id: int) -> str:
    """A published round's bundle's name among the store's bundles."""
    return f"round-{round_id}-results.zip"
