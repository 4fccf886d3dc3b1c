"""Packing several batches into one container run: the same results as one run per batch,
fewer runs, and a failing pack split until the bad batch is alone."""


import pytest
from sqlalchemy import Integer, func, select

from arena.db import transaction
from arena.execution.packing import make_packs, pack_images
from arena.execution.run import run
from arena.models import (
    AdversarialImage,
    AttackJob,
    Batch,
    Classification,
    DefenseJob,
    Image,
    JobAttempt,
    JobKind,
    Submission,
    SubmissionKind,
    SubmissionStatus,
)
from arena.results.scoring import Standings
from conftest import SAMPLES, make_settings
from factories import add_submission, submit_folder, synth_dataset, write_submission

SAMPLE_SET = ["random_noise", "step_to_target", "decoder"]


# --- sizing, without containers ---------------------------------------------------------


def _submission(session, name: str, seconds: float, images: int, kind=SubmissionKind.ATTACK) -> Submission:
    """An accepted submission whose dry run took ``seconds`` for ``images``: what sizing reads."""
    return add_submission(session, name, kind, owner=f"team-{name}", validation_report={"seconds": seconds, "images": images})


def test_packs_are_aligned_groups_fixed_by_the_dry_run(settings):
    """Which batches share a run follows from the dry run alone (a power of two of them), not
    from the order jobs come in or from what later runs measure; a defense over an attack's
    output takes at most the attack's batches, so each of its packs lies in one attack pack."""
    dataset = synth_dataset(settings, 60, batch_size=10)
    settings.pack_seconds, settings.max_pack_images = 2.0, 1000
    with transaction(settings) as session:
        fast = _submission(session, "fast", seconds=0.5, images=10)  # 0.05 s per image: 40 images, 4 batches
        slow = _submission(session, "slow", seconds=30, images=10)  # 3 s per image: one batch per run
        wide = _submission(session, "wide", seconds=0.1, images=10, kind=SubmissionKind.DEFENSE)  # 200: 16 -> 6 batches
        batches = list(session.scalars(select(Batch.id).where(Batch.dataset_id == dataset.id).order_by(Batch.index)))
        for submission in (fast, slow):
            for eps in (4, 16):
                session.add_all(AttackJob(submission_id=submission.id, batch_id=b, epsilon=eps) for b in reversed(batches))
        session.flush()
        assert pack_images(settings, fast.validation_report) == 40
        jobs = {j.id: j for j in session.scalars(select(AttackJob))}
        index = {b: k for k, b in enumerate(batches)}
        packs = make_packs(session, settings, JobKind.ATTACK, list(jobs))
        fast_packs = [[index[jobs[j].batch_id] for j in p.job_ids] for p in packs if jobs[p.job_ids[0]].submission_id == fast.id]
        assert sorted(fast_packs) == [[0, 1, 2, 3], [0, 1, 2, 3], [4, 5], [4, 5]]  # aligned, in batch order
        assert all(len({jobs[j].epsilon for j in p.job_ids}) == 1 for p in packs)
        assert all(len(p.job_ids) == 1 for p in packs if jobs[p.job_ids[0]].submission_id == slow.id)
        assert make_packs(session, settings, JobKind.ATTACK, sorted(jobs, reverse=True)) == packs  # order-free
        session.add(JobAttempt(attack_job_id=next(iter(jobs)), seconds=1.0, images=100))  # later runs change nothing
        session.flush()
        assert make_packs(session, settings, JobKind.ATTACK, list(jobs)) == packs
        for job in jobs.values():
            session.add(DefenseJob(submission_id=wide.id, batch_id=job.batch_id, attack_job_id=job.id))
        session.add_all(DefenseJob(submission_id=wide.id, batch_id=b) for b in batches)  # the clean batches
        session.flush()
        defense_jobs = list(session.scalars(select(DefenseJob.id)))
        defense = {j.id: j for j in session.scalars(select(DefenseJob))}
        sizes = {}
        for pack in make_packs(session, settings, JobKind.DEFENSE, defense_jobs):
            source = defense[pack.job_ids[0]].attack_job
            sizes.setdefault(source.submission_id if source else None, set()).add(len(pack.job_ids))
        assert sizes == {fast.id: {4, 2}, slow.id: {1}, None: {6}}  # within the attack packs; 16 batches for clean


# --- the real thing ---------------------------------------------------------------------


def _tournament(root, pack_seconds: float):
    settings = make_settings(root / "arena", epsilons=[4, 16], pack_seconds=pack_seconds)
    dataset = synth_dataset(settings, 40, batch_size=10)
    for name in SAMPLE_SET:
        submit_folder(settings, SAMPLES / name, root)
    summary = run(settings)
    with transaction(settings) as session:
        adversarial = set(session.execute(
            select(Image.name, Submission.name, AttackJob.epsilon, AdversarialImage.sha256)
            .join(AdversarialImage, AdversarialImage.image_id == Image.id).join(AttackJob).join(Submission)
        ).all())
        labels = set(session.execute(select(Image.name, Classification.adversarial_image_id.is_(None), Classification.label)
                                     .join(Image, Classification.image_id == Image.id)).all())
        standings = Standings.compute(session, dataset)
    return summary, adversarial, labels, standings.matrix("error"), standings.matrix("hit")


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
def test_packed_runs_give_the_same_results_in_fewer_containers(tmp_path):
    unpacked = _tournament(tmp_path / "one-per-batch", pack_seconds=0)
    packed = _tournament(tmp_path / "packed", pack_seconds=60)
    assert unpacked[0].attack_jobs == packed[0].attack_jobs == 2 * 2 * 4
    assert unpacked[0].container_runs == 2 * 2 * 4 + 1 * (16 + 4)
    # one run per (attack, eps); one per (attack, eps) and the clean images for the defense
    assert packed[0].container_runs == 2 * 2 + (1 + 2 * 2)
    for one, other in zip(unpacked[1:], packed[1:]):
        if hasattr(one, "equals"):
            assert one.equals(other)
        else:
            assert one == other


POISON_ATTACK = r'''
import os, sys
import numpy as np
from PIL import Image
src, dst, eps = sys.argv[1], sys.argv[2], int(sys.argv[3])
def label(pixels):
    rows, cols = np.linspace(0, 299, 3).astype(int), np.linspace(0, 299, 6).astype(int)
    bits = [pixels[rows[b // 5]:rows[b // 5 + 1], cols[b % 5]:cols[b % 5 + 1]].mean() >= 127.5 for b in range(10)]
    return sum(int(bit) << b for b, bit in enumerate(bits))
for name in sorted(n for n in os.listdir(src) if n.endswith('.png')):
    pixels = np.asarray(Image.open(os.path.join(src, name)))
    if label(pixels) == POISON:
        sys.exit('choked on a poisoned image')
    Image.fromarray(np.clip(pixels.astype(int) + eps, 0, 255).astype('uint8')).save(os.path.join(dst, name))
'''


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
def test_a_failing_pack_is_split_until_the_bad_batch_is_alone(tmp_path):
    settings = make_settings(tmp_path / "arena", epsilons=[8], pack_seconds=600)
    dataset = synth_dataset(settings, 80, batch_size=10)
    with transaction(settings) as session:
        images = session.scalars(select(Image).where(Image.dataset_id == dataset.id)).all()
        counts = {}
        for image in images:
            counts[image.true_label] = counts.get(image.true_label, 0) + 1
        # a label found once, in a batch that is not the first (the dry run's batch)
        poison = next(i for i in images if counts[i.true_label] == 1 and i.batch.index == 5)
        poison_batch = poison.batch_id
    folder = write_submission(
        tmp_path / "poison", {"type": "attack", "container": "arena/python:bookworm", "entry_point": "run_attack.sh"},
        {"attack.py": POISON_ATTACK.replace("POISON", str(poison.true_label)),
         "run_attack.sh": '#!/bin/sh\nexec python3 attack.py "$@"\n'})
    assert submit_folder(settings, folder, tmp_path, team="t").status is SubmissionStatus.ACCEPTED

    summary = run(settings)

    assert summary.attack_jobs == 8 and summary.container_runs > 1
    with transaction(settings) as session:
        missing = dict(session.execute(
            select(AttackJob.batch_id, func.sum(AdversarialImage.missing.cast(Integer))).join(AdversarialImage).group_by(AttackJob.batch_id)
        ).all())
        assert missing[poison_batch] >= 1
        assert all(count == 0 for batch, count in missing.items() if batch != poison_batch)
        sizes = session.scalars(select(JobAttempt.pack_jobs).where(JobAttempt.attack_job_id.is_not(None))).all()
        assert max(sizes) == 8 and 1 in sizes
