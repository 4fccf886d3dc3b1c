"""One small shared tournament for the hostile suite, and how hostile code enters it.

Every hostile case is a tiny submission taken in through ``arena.intake.submit``, run in
the tournament with ``run`` when it passed its dry run, then disqualified
so that later cases do not run against it. What each case must leave alone is captured
by ``snapshot``: every stored result of the well-behaved submissions, the bytes behind
every image they refer to, and their code.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import aliased

from arena.config import SandboxLimits, Settings
from arena.data.images import ImageStore
from arena.db import transaction
from arena.execution.checking import submit
from arena.execution.run import run
from arena.intake.archive import pack, tree_sha256
from arena.models import (
    AdversarialImage,
    AttackJob,
    Classification,
    DefenseJob,
    Image,
    JobAttempt,
    Submission,
    SubmissionStatus,
)
from conftest import SAMPLES, make_settings
from factories import submit_folder, synth_dataset, write_submission

IMAGE = "arena/python:bookworm"
BATCH = 3  # images per batch; two batches
EPSILONS = [4, 16]
HONEST_EPSILON = max(EPSILONS)  # the dry run's: a sleeper attack behaves there and only there
WELL_BEHAVED = ["random_noise", "decoder"]
MAX_OUTPUT_BYTES = 16 * 2**20
MAX_OUTPUT_FILES = 200

#: Sleepers: honest in the dry run (largest epsilon; one batch of BATCH images), hostile in
#: the tournament (smaller epsilon; defense packs of more images). The scripts use find, never
#: ls: bookworm's ls fails on every path under bookworm's runsc (docs/security.md, "gVisor").
ATTACK_GUARD = f'if [ "$3" = {HONEST_EPSILON} ]; then cp "$1"/*.png "$2"/; exit 0; fi\n'
DEFENSE_GUARD = (
    f'if [ "$(find "$1" -name "*.png" | wc -l)" -le {BATCH} ]; then\n'
    '  for f in "$1"/*.png; do echo "$(basename "$f"),1"; done > "$2"; exit 0\nfi\n'
)
ENTRY = {"attack": "run_attack.sh", "defense": "run_defense.sh"}
#: The OCI runtimes the containment tests run under, with their test ids: the engine's default
#: (runc, which ARENA_SANDBOX_RUNTIME unset gives), and gVisor's runsc.
RUNTIMES = [pytest.param(None, id="runc"), pytest.param("runsc", id="runsc")]


def hostile_settings(data_dir: Path, runtime: str | None = None, **overrides) -> Settings:
    """Small time and output limits, so time-outs and output bombs end in seconds, under the
    OCI ``runtime`` named (None: the engine's default). Packs as large as they go (a submission's pack size is fixed at its
    dry run, whose time varies with the machine's load): a tournament run then always holds
    both batches, which is what the sleeper defenses tell the dry run by."""
    limits = SandboxLimits(memory="512m", max_output_bytes=MAX_OUTPUT_BYTES, max_output_files=MAX_OUTPUT_FILES,
                           max_log_bytes=256 * 1024, runtime=runtime)
    # 4 s per image: a hang ends in 24 s (a pack of six images), and an honest run under gVisor
    # keeps a wide margin while other test workers load the machine (at 2.5 s one took 19.9 s).
    values = dict(seconds_per_image=4.0, epsilons=EPSILONS, sandbox=limits, pack_seconds=3600.0)
    return make_settings(data_dir, **{**values, **overrides})


@dataclass
class Tournament:
    settings: Settings
    root: Path
    baseline: dict

    def check_unchanged(self) -> None:
        """The well-behaved submissions' results, images and code, byte for byte."""
        assert snapshot(self.settings) == self.baseline


def build(root: Path, runtime: str | None = None, **overrides) -> Tournament:
    """The dataset and the well-behaved submissions, run once under ``runtime``; ``overrides``
    go to the settings."""
    settings = hostile_settings(root / "arena", runtime, **overrides)
    synth_dataset(settings, 2 * BATCH, batch_size=BATCH)
    for name in WELL_BEHAVED:
        assert submit_folder(settings, SAMPLES / name, root).status is SubmissionStatus.ACCEPTED
    summary = run(settings)
    assert summary.platform_errors == [] and summary.jobs > 0
    return Tournament(settings, root, snapshot(settings))


def _file_sha(store: ImageStore, sha256: str) -> str:
    return hashlib.sha256(store.read_bytes(sha256)).hexdigest()


def snapshot(settings: Settings) -> dict:
    """Everything stored for the well-behaved submissions, keyed by natural keys (names,
    epsilon, batch), with a hash of each image file's bytes as it is on disk now."""
    store = ImageStore(settings.store_dir)
    attack, defense = aliased(Submission), aliased(Submission)
    with transaction(settings) as session:
        adversarial = {
            (name, job.epsilon, image.name): (row.sha256, row.linf, row.clipped, row.missing, row.wrong_size,
                                             _file_sha(store, row.sha256))
            for row, job, image, name in session.execute(
                select(AdversarialImage, AttackJob, Image, attack.name)
                .join(AttackJob, AdversarialImage.attack_job_id == AttackJob.id)
                .join(Image, AdversarialImage.image_id == Image.id)
                .join(attack, AttackJob.submission_id == attack.id).where(attack.name.in_(WELL_BEHAVED))
            )
        }
        classifications = {}
        for row, image, name in session.execute(
            select(Classification, Image, defense.name).join(Image, Classification.image_id == Image.id)
            .join(defense, Classification.defense_id == defense.id).where(defense.name.in_(WELL_BEHAVED))
        ):
            source = session.get(AdversarialImage, row.adversarial_image_id) if row.adversarial_image_id else None
            origin = (source.attack_job.submission.name, source.attack_job.epsilon) if source else ("clean", 0)
            if origin[0] in WELL_BEHAVED or origin[0] == "clean":
                classifications[(name, *origin, image.name)] = (row.label, row.problem)
        clean = {image.name: _file_sha(store, image.sha256) for image in session.scalars(select(Image))}
        code = {s.name: tree_sha256(settings.submissions_dir / s.sha256)
                for s in session.scalars(select(Submission).where(Submission.name.in_(WELL_BEHAVED)))}
    return {"adversarial": adversarial, "classifications": classifications, "clean": clean, "code": code}


def code_folder(settings: Settings, name: str) -> Path:
    """Where the submission called ``name`` keeps its unpacked code."""
    with transaction(settings) as session:
        return settings.submissions_dir / session.scalar(select(Submission.sha256).where(Submission.name == name))


def write_hostile(folder: Path, kind: str, script: str, files: dict[str, str] | None = None) -> Path:
    """A submission folder in the suite's image: the entry point is ``script`` after a shebang."""
    entry = ENTRY["defense" if kind == "defense" else "attack"]
    return write_submission(folder, {"type": kind, "container": IMAGE, "entry_point": entry},
                            {entry: "#!/bin/sh\n" + script, **(files or {})})


def take_in(tournament: Tournament, name: str, kind: str, script: str, files: dict[str, str] | None = None) -> Submission:
    """Submit code through the normal intake path (unpack, checks, dry run)."""
    folder = write_hostile(tournament.root / "hostile" / name, kind, script, files)
    archive = pack(folder, tournament.root / "hostile" / f"{name}.tar.gz")
    return submit(tournament.settings, archive, team=f"team-{name}", name=name)


def enter(tournament: Tournament, name: str, kind: str, script: str, files: dict[str, str] | None = None,
          one_batch_per_run: bool = False) -> Submission:
    """Take code in; run it in the tournament when it was accepted. With ``one_batch_per_run``
    (the attacks that hang), it runs one batch per container: a hang then costs one batch's
    time limit, where a pack of both batches cost the pack's limit and then its two halves'
    (the suite's four hangs under two runtimes took a sixth of the whole suite's time). How a
    failed pack is split is tested in test_packing; slow honest cases (huge logs under
    gVisor) keep the pack's longer limit."""
    submission = take_in(tournament, name, kind, script, files)
    if submission.status is SubmissionStatus.ACCEPTED:
        if one_batch_per_run:
            with transaction(tournament.settings) as session:
                session.get(Submission, submission.id).pack_images = BATCH
        summary = run(tournament.settings)
        assert summary.platform_errors == [], summary.platform_errors
    return submission


def disqualify(settings: Settings, submission_id: int) -> None:
    """What organizers do with a cheater; it also keeps later cases from running against it."""
    with transaction(settings) as session:
        session.get(Submission, submission_id).status = SubmissionStatus.DISQUALIFIED


def describe(attempt: JobAttempt) -> str:
    """One attempt as a line of text that expectations can be matched against."""
    return (f"exit={attempt.exit_code} timed_out={attempt.timed_out} killed={attempt.killed_reason} "
            f"error={attempt.error}\n{attempt.log_excerpt or ''}")


def attack_outcome(settings: Settings, submission_id: int, epsilon: int) -> tuple[list[AttackJob], list[AdversarialImage], str]:
    """The attack's jobs at ``epsilon``, their stored images, and all their attempts described."""
    with transaction(settings) as session:
        jobs = session.scalars(select(AttackJob).where(AttackJob.submission_id == submission_id,
                                                       AttackJob.epsilon == epsilon)).all()
        ids = [j.id for j in jobs]
        images = session.scalars(select(AdversarialImage).where(AdversarialImage.attack_job_id.in_(ids))).all()
        attempts = session.scalars(select(JobAttempt).where(JobAttempt.attack_job_id.in_(ids))).all()
        return list(jobs), list(images), "\n".join(map(describe, attempts))


def defense_outcome(settings: Settings, submission_id: int) -> tuple[list[DefenseJob], list[Classification], str]:
    with transaction(settings) as session:
        jobs = session.scalars(select(DefenseJob).where(DefenseJob.submission_id == submission_id)).all()
        ids = [j.id for j in jobs]
        rows = session.scalars(select(Classification).where(Classification.defense_job_id.in_(ids))).all()
        attempts = session.scalars(select(JobAttempt).where(JobAttempt.defense_job_id.in_(ids))).all()
        return list(jobs), list(rows), "\n".join(map(describe, attempts))
