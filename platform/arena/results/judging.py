"""How one answer is judged: the single definition every count, score and view is built on.

The 2017 rules (docs/scoring.md): an answer is an *error* when its label is not the
image's TrueLabel, and a *hit* when it is the image's TargetClass. A missing or invalid
answer has no label: it is an error and never a hit. A hit is judged for every attack,
as the 2017 ``hit_target_class_matrix`` was; only the targeted-attack track scores it.

The rule is written once, as SQL expressions over a classification joined to its image,
so the tallies, the per-image exports, the results pages and the image drill-down all
select the same columns instead of each re-deriving them.
"""

from enum import StrEnum

from sqlalchemy import ColumnElement, Select, case

from arena.models import AdversarialImage, AttackJob, Classification, Dataset, Image


class MatrixValue(StrEnum):
    """What a matrix cell or a score counts."""

    ERROR = "error"  # misclassified: the attack's measure
    CORRECT = "correct"  # the defense's measure
    HIT = "hit"  # the target class reached: the targeted attack's measure


def error(label: ColumnElement) -> ColumnElement:
    """1 when ``label`` != TrueLabel; a null label compares to nothing, so it is an error.
    ``label`` is a classification's label, wherever the row is read from (the table, or the
    rows an INSERT is storing); the image must be joined."""
    return case((label == Image.true_label, 0), else_=1)


def hit(label: ColumnElement) -> ColumnElement:
    """1 when ``label`` == TargetClass; a null label is never a hit."""
    return case((label == Image.target_class, 1), else_=0)


ERROR = error(Classification.label)
HIT = hit(Classification.label)


def adversarial_answers(query: Select, dataset: Dataset) -> Select:
    """``query`` over the answers on ``dataset``'s adversarial images, each joined to what the
    rule and the views need: its adversarial image, that image's attack job, and its image."""
    return (query.select_from(Classification)
            .join(AdversarialImage, Classification.adversarial_image_id == AdversarialImage.id)
            .join(AttackJob, AdversarialImage.attack_job_id == AttackJob.id)
            .join(Image, Classification.image_id == Image.id)
            .where(Image.dataset_id == dataset.id))
