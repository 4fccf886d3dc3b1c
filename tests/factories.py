"""Test data, built in one place: synthetic datasets, submission folders and archives, the
samples taken in through intake, and database rows (teams, accepted submissions) for the
tests that need a tournament's rows but not its containers.

Fixtures stay in ``conftest.py``; what a fixture or a test builds comes from here, so a
change of the models or of intake is made once.
"""

import json
import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.competition import rounds
from arena.config import EpsilonSchedule, Settings
from arena.data.dataset import store_dataset, synthesize
from arena.db import transaction
from arena.execution import pack_run, planning
from arena.execution.checking import submit
from arena.intake.archive import pack
from arena.intake.metadata import Metadata
from arena.models import (
    AdversarialImage,
    AttackJob,
    ClassificationProblem,
    Dataset,
    DefenseJob,
    Entry,
    Image,
    JobStatus,
    Round,
    Submission,
    SubmissionKind,
    SubmissionStatus,
    Team,
)
from arena.sandbox.containers import RunResult
from arena.sandbox.defense_run import DefenseInput, DefenseOutcome
from arena.sandbox.result_csv import Answer

#: The naming key of runs made outside any round (each round has its own: ``Round.naming_key``).
NAMING_KEY = bytes(range(32))


def synth_dataset(settings: Settings, images: int, batch_size: int, name: str = "synthetic") -> Dataset:
    """A stored dataset of ``images`` synthetic images (fixed seed: the same pixels each run),
    with its round open and every submission made so far entered, as in a one-round tournament."""
    dataset = store_dataset(settings, name, synthesize(images), batch_size=batch_size)
    with transaction(settings) as session:
        round_ = rounds.ensure(session, settings, session.get_one(Dataset, dataset.id))
        session.add_all(Entry(round=round_, submission=s) for s in session.scalars(select(Submission)))
    return dataset


def team_named(session: Session, name: str) -> Team:
    """The team called ``name``, made when it does not exist yet: rows of one team share it."""
    return session.scalar(select(Team).where(Team.name == name)) or Team(name=name)


def add_submission(
    session: Session,
    name: str,
    kind: SubmissionKind = SubmissionKind.ATTACK,
    *,
    owner: Team | str = "t",
    status: SubmissionStatus = SubmissionStatus.ACCEPTED,
    meta: dict | None = None,
    validation_report: dict | None = None,
) -> Submission:
    """A submission row as intake leaves it, without code or dry run (planning, scoring and
    routing read only the row); flushed, so it has its id. Its sha256 is the padded name,
    unique as names are. ``owner`` is a team or the name of one (made when missing)."""
    submission = Submission(
        team=owner if isinstance(owner, Team) else team_named(session, owner), name=name, kind=kind,
        sha256=name.ljust(64, "0"), meta=meta or {}, status=status, validation_report=validation_report,
    )
    session.add(submission)
    session.add_all(Entry(round=round_, submission=submission) for round_ in session.scalars(select(Round)))
    session.flush()
    return submission


def red_and_blue(settings: Settings) -> None:
    """A small round's entries for the web's tests: red's attack and two defenses of blue."""
    synth_dataset(settings, 4, batch_size=2)
    with transaction(settings) as session:
        add_submission(session, "red-attack", SubmissionKind.ATTACK, owner="red")
        add_submission(session, "blue-1", SubmissionKind.DEFENSE, owner="blue")
        add_submission(session, "blue-2", SubmissionKind.DEFENSE, owner="blue")


def write_submission(folder: Path, metadata: dict, files: dict[str, str]) -> Path:
    """A submission folder: ``metadata.json`` and ``files`` (name: text), its entry point
    executable as a team would ship it."""
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps(metadata))
    for name, text in files.items():
        (folder / name).write_text(text)
    if metadata.get("entry_point") in files:
        (folder / metadata["entry_point"]).chmod(0o755)
    return folder


def submit_folder(settings: Settings, folder: Path, tmp_path: Path, name: str | None = None, team: str | None = None) -> Submission:
    """Pack ``folder`` (a sample or a written submission) and take it in through intake,
    dry run included; the archive goes in ``tmp_path``."""
    archive = pack(folder, tmp_path / f"{folder.name}.tar.gz")
    return submit(settings, archive, team=team or f"team-{folder.name}", name=name)


def variant(folder: Path, tmp_path: Path, new_name: str) -> Path:
    """A copy of a sample with one changed comment: same behaviour, different code hash."""
    copy = tmp_path / new_name
    shutil.copytree(folder, copy)
    script = next(copy.glob("run_*.sh"))
    script.write_text(script.read_text() + f"# variant {new_name}\n")
    return copy


def copy_arena(settings: Settings, data_dir: Path) -> Settings:
    """A copy of a SQLite tournament in ``data_dir``, and settings for it: for a test that
    changes a tournament other tests share (one costs scores of container runs, a copy
    a second). The database is copied with SQLite's backup (consistent under WAL); the
    image store is hard-linked, as its files are written once, through a temp file and a
    rename, and never changed; the scratch folder is left out."""
    if settings.database_url is not None:
        raise ValueError("only a tournament in SQLite is copied")
    shutil.copytree(settings.data_dir, data_dir, ignore=shutil.ignore_patterns("arena.db*", "work", "store"))
    shutil.copytree(settings.store_dir, data_dir / "store", copy_function=os.link)
    with closing(sqlite3.connect(settings.data_dir / "arena.db")) as source, \
            closing(sqlite3.connect(data_dir / "arena.db")) as copy:
        source.backup(copy)
    return settings.model_copy(update={"data_dir": data_dir})


#: One random stream over the images of the run, in name order: a common 2017 pattern,
#: whose output for an image depends on the other images of its run.
STREAM_ATTACK = """
import sys
from pathlib import Path
import numpy as np
from PIL import Image

def main(inputs, outputs, eps):
    stream = np.random.RandomState(0)
    for path in sorted(Path(inputs).glob("*.png")):
        pixels = np.asarray(Image.open(path).convert("RGB")).astype(np.int16)
        signs = stream.randint(0, 2, size=pixels.shape) * 2 - 1
        Image.fromarray(np.clip(pixels + int(eps) * signs, 0, 255).astype(np.uint8)).save(Path(outputs) / path.name)

if __name__ == "__main__":
    main(*sys.argv[1:4])
"""


def stream_attack(folder: Path) -> Path:
    """An attack whose outputs depend on which images share its run, and in what name order."""
    return write_submission(folder, {"type": "attack", "container": "arena/python:bookworm", "entry_point": "run_attack.sh"},
                            {"run_attack.sh": '#!/bin/sh\nexec python3 attack.py "$@"\n', "attack.py": STREAM_ATTACK})


def adversarial_outputs(settings: Settings) -> dict[tuple, str]:
    """Every stored adversarial image's hash, by (attack id, epsilon, image name)."""
    with transaction(settings) as session:
        return {(job.submission_id, job.epsilon, image.name): adversarial.sha256 for adversarial, job, image in
                session.execute(select(AdversarialImage, AttackJob, Image).join(AttackJob).join(Image))}


#: The fabricated tournaments' submissions: an untargeted and a targeted attack, two defenses.
TWO_BY_TWO = [("A", SubmissionKind.ATTACK), ("T", SubmissionKind.TARGETED_ATTACK),
              ("D", SubmissionKind.DEFENSE), ("E", SubmissionKind.DEFENSE)]


def attacked(session: Session, dataset: Dataset, epsilons: list[int],
             submissions: list[tuple[str, SubmissionKind]] = TWO_BY_TWO, owner: str = "t") -> dict[str, int]:
    """Accepted submissions whose attack jobs are done, each adversarial image the clean one,
    and whose defense jobs are planned: what defense runs need, without a container. The
    submissions' ids by name."""
    ids = {name: add_submission(session, name, kind, owner=owner).id for name, kind in submissions}
    planning.plan(session, dataset, epsilons, EpsilonSchedule.ALL)
    for job in session.scalars(select(AttackJob)):
        job.status = JobStatus.DONE
        for image in job.batch.images:
            session.add(AdversarialImage(attack_job=job, image_id=image.id, sha256=image.sha256, linf=0))
    session.flush()
    planning.plan(session, dataset, epsilons, EpsilonSchedule.ALL)
    return ids


Labels = dict[str, tuple[int, int]]  # an image's sha256 -> (true label, target class)


def every_case(labels: Labels, inputs: list[DefenseInput]) -> DefenseOutcome:
    """Right, on the target, missing, invalid or wrong, by position: every case the scoring
    rules name (target hits for untargeted attacks too)."""
    answers = {}
    for item in inputs:
        truth, target = labels[item.sha256]
        answers[item.key] = [
            Answer(truth), Answer(target), Answer(None, ClassificationProblem.MISSING),
            Answer(None, ClassificationProblem.INVALID), Answer(truth % 1000 + 1),
        ][item.key % 5]
    return DefenseOutcome(RunResult(0, False, None, 0.1, ""), answers)


#: What the fake defenses run "as": no container starts, but the attempts record its image.
FAKE_CODE = Metadata(type="defense", container="fake/defense:1", entry_point="run.sh").code(
    Path("fake"), {"container": "sha256:" + "0" * 64})


def fake_defenses(monkeypatch, settings: Settings, answer=every_case) -> None:
    """Defense runs through ``pack_run`` with ``answer(labels, inputs)`` in place of the container."""
    with transaction(settings) as session:
        labels = {i.sha256: (i.true_label, i.target_class) for i in session.scalars(select(Image))}
    monkeypatch.setattr(pack_run, "submission_code", lambda _settings, _submission: FAKE_CODE)
    monkeypatch.setattr(pack_run, "execute_defense", lambda _s, _c, inputs, _key: answer(labels, inputs))


def defense_packs(settings: Settings) -> list[pack_run.Pack]:
    """One pack per defense, of all its jobs."""
    with transaction(settings) as session:
        by_defense: dict[int, list[int]] = {}
        for job in session.scalars(select(DefenseJob).order_by(DefenseJob.id)):
            by_defense.setdefault(job.submission_id, []).append(job.id)
    return [pack_run.Pack("defense", tuple(ids)) for ids in by_defense.values()]
