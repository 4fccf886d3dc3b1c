"""Per-image outcomes: the stored answers summed per image, for what sums per cell cannot say.

The tallies hold counts per (attack, defense, epsilon) cell: enough for scores, not for a
defense's worst case over attacks on one image, nor for an interval over images. These
arrays are read from the classifications themselves (judged by ``judging``'s expressions,
like every other view) with two GROUP BY queries, one per side of the matrix, and one for
the clean answers; nothing is stored besides them.

Per defense, epsilon and image: how many attacks' outputs it answered, how many of those
answers were errors, and the sum of the ids of the attacks that caused them (the attack
itself when exactly one did). Per attack, epsilon and image: how many defenses answered
its output, with how many errors and target hits. Per defense and image: its clean answer.
Only accepted submissions count, as everywhere.

Each of these is a sum over defense jobs, so the outcomes of jobs that finished since can
be read alone and added (``of_jobs``, ``plus``): the web cache does so when results land,
instead of reading every answer again (docs/benchmarks.md).
"""

from dataclasses import dataclass, replace

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arena.models import AttackJob, Classification, Dataset, Image, SubmissionKind
from arena.results.judging import ERROR, HIT, adversarial_answers
from arena.results.scoring import Names

_COUNTS = ("answered", "errors", "breakers", "attack_answered", "attack_errors", "attack_hits")


@dataclass
class ImageOutcomes:
    images: np.ndarray  # the dataset's image ids, ascending: the bootstrap's units
    epsilons: list[int]
    defenses: np.ndarray  # accepted defense ids, ascending
    attacks: np.ndarray  # the attacks a defense's outcomes count (targeted ones included), ascending
    attack_ids: np.ndarray  # every accepted attack, ascending: the rows of the attack-side arrays
    # (defenses, epsilons, images)
    answered: np.ndarray
    errors: np.ndarray
    breakers: np.ndarray  # the sum of the ids of the attacks whose output it got wrong
    # (defenses, images)
    clean_answered: np.ndarray
    clean_correct: np.ndarray
    # (attacks, epsilons, images)
    attack_answered: np.ndarray
    attack_errors: np.ndarray
    attack_hits: np.ndarray

    @classmethod
    def load(cls, session: Session, dataset: Dataset, names: Names, attacks: list[int] | None = None) -> "ImageOutcomes":
        """The outcomes of every accepted submission; ``attacks`` (ids) restricts the
        attacks a defense's outcomes count, for a worst case over a chosen set."""
        images = np.array(session.scalars(select(Image.id).where(Image.dataset_id == dataset.id).order_by(Image.id)).all(),
                          dtype=np.int64)
        defenses = np.array(sorted(names.of_kind(SubmissionKind.DEFENSE).index), dtype=np.int64)
        attack_ids = np.array(sorted(names.of_kind(SubmissionKind.ATTACK, SubmissionKind.TARGETED_ATTACK).index),
                              dtype=np.int64)
        counted = attack_ids if attacks is None else np.intersect1d(attack_ids, np.asarray(attacks, dtype=np.int64))
        empty = cls(images, [], defenses, counted, attack_ids, *[None] * 8)
        return empty._read(session, dataset, fixed_epsilons=False)

    def of_jobs(self, session: Session, dataset: Dataset, job_ids: list[int]) -> "ImageOutcomes | None":
        """The outcomes of these defense jobs alone, on the same images, submissions and
        epsilons, to add to these (``plus``); None when an answer falls outside them (a new
        epsilon): the caller loads everything again."""
        return self._read(session, dataset, fixed_epsilons=True, jobs=job_ids)

    def plus(self, other: "ImageOutcomes") -> "ImageOutcomes":
        """These outcomes and ``other``'s, of other defense jobs, together: every count is a
        sum over defense jobs, and each clean answer belongs to one job."""
        sums = {name: getattr(self, name) + getattr(other, name) for name in _COUNTS}
        clean = {name: getattr(self, name) | getattr(other, name) for name in ("clean_answered", "clean_correct")}
        return replace(self, **sums, **clean)

    def _read(self, session: Session, dataset: Dataset, fixed_epsilons: bool,
              jobs: list[int] | None = None) -> "ImageOutcomes | None":
        of_jobs = () if jobs is None else (Classification.defense_job_id.in_(jobs),)
        by_defense = _rows(session, _by_defense(dataset, self.defenses, self.attacks).where(*of_jobs))
        by_attack = _rows(session, _by_attack(dataset, self.defenses, self.attack_ids).where(*of_jobs))
        clean = _rows(session, _clean(dataset, self.defenses).where(*of_jobs))
        seen = np.union1d(by_defense[:, 1], by_attack[:, 1])
        if fixed_epsilons and not np.isin(seen, self.epsilons).all():
            return None
        epsilons = self.epsilons if fixed_epsilons else [int(e) for e in seen]
        eps = np.array(epsilons, dtype=np.int64)

        def grid(rows: np.ndarray, subjects: np.ndarray, columns: range) -> list[np.ndarray]:
            place = (np.searchsorted(subjects, rows[:, 0]), np.searchsorted(eps, rows[:, 1]),
                     np.searchsorted(self.images, rows[:, 2]))
            arrays = []
            for column in columns:
                array = np.zeros((len(subjects), len(eps), len(self.images)), dtype=np.int64)
                array[place] = rows[:, column]
                arrays.append(array)
            return arrays

        answered, errors, breakers = grid(by_defense, self.defenses, range(3, 6))
        attack_answered, attack_errors, attack_hits = grid(by_attack, self.attack_ids, range(3, 6))
        clean_answered = np.zeros((len(self.defenses), len(self.images)), dtype=bool)
        clean_correct = np.zeros_like(clean_answered)
        place = (np.searchsorted(self.defenses, clean[:, 0]), np.searchsorted(self.images, clean[:, 1]))
        clean_answered[place] = True
        clean_correct[place] = clean[:, 2] == 0
        return replace(self, epsilons=epsilons, answered=answered, errors=errors, breakers=breakers,
                       clean_answered=clean_answered, clean_correct=clean_correct, attack_answered=attack_answered,
                       attack_errors=attack_errors, attack_hits=attack_hits)

    def attack_rows(self, ids) -> np.ndarray:
        """Positions of these attack ids in the attack-side arrays."""
        return np.searchsorted(self.attack_ids, np.asarray(ids, dtype=np.int64))

    def defense_rows(self, ids) -> np.ndarray:
        """Positions of these defense ids in the defense-side arrays."""
        return np.searchsorted(self.defenses, np.asarray(ids, dtype=np.int64))


def _by_defense(dataset: Dataset, defenses: np.ndarray, attacks: np.ndarray):
    key = (Classification.defense_id, AttackJob.epsilon, Classification.image_id)
    breakers = func.sum(ERROR * AttackJob.submission_id)
    query = adversarial_answers(select(*key, func.count(), func.sum(ERROR), breakers), dataset)
    return query.where(Classification.defense_id.in_(defenses.tolist()),
                       AttackJob.submission_id.in_(attacks.tolist())).group_by(*key)


def _by_attack(dataset: Dataset, defenses: np.ndarray, attacks: np.ndarray):
    key = (AttackJob.submission_id, AttackJob.epsilon, Classification.image_id)
    query = adversarial_answers(select(*key, func.count(), func.sum(ERROR), func.sum(HIT)), dataset)
    return query.where(Classification.defense_id.in_(defenses.tolist()),
                       AttackJob.submission_id.in_(attacks.tolist())).group_by(*key)


def _clean(dataset: Dataset, defenses: np.ndarray):
    return (select(Classification.defense_id, Classification.image_id, ERROR)
            .join(Image, Classification.image_id == Image.id)
            .where(Image.dataset_id == dataset.id, Classification.adversarial_image_id.is_(None),
                   Classification.defense_id.in_(defenses.tolist())))


def _rows(session: Session, query) -> np.ndarray:
    """Integer rows as one array, through Core (plain tuples: the ORM's rows cost more)."""
    rows = session.connection().execute(query).all()
    width = len(query.selected_columns)
    return np.array(rows, dtype=np.int64).reshape(len(rows), width)
