"""How much attacks actually changed the images: mean and largest L-infinity and L2 distance
per attack and epsilon, from the adversarial images as stored (after clipping).

The budget bounds L-infinity only; two attacks with the same budget can spend very
different amounts of it (a sign step moves every pixel by epsilon, a targeted step a few),
which the scores alone do not show. A missing output, replaced by the clean image, counts
as no change (0), as it did for the defenses that classified it. L2 is unknown (NULL) on
images stored before it was recorded (migration 0011): its mean and largest value are over
the images that have it (``l2_known``), and null when none has.
"""

import pandas as pd
from sqlalchemy import Integer, cast, func, select
from sqlalchemy.orm import Session

from arena.models import AdversarialImage, AttackJob, Batch, Dataset

COLUMNS = ["attack_id", "epsilon", "images", "missing", "linf_mean", "linf_max", "l2_known", "l2_mean", "l2_max"]


def perturbations(session: Session, dataset: Dataset, attack_ids: list[int]) -> pd.DataFrame:
    """One row per (attack, epsilon) of these attacks with adversarial images on ``dataset``."""
    key = (AttackJob.submission_id, AttackJob.epsilon)
    query = (
        select(*key, func.count(), func.sum(cast(AdversarialImage.missing, Integer)), func.avg(AdversarialImage.linf),
               func.max(AdversarialImage.linf), func.count(AdversarialImage.l2), func.avg(AdversarialImage.l2),
               func.max(AdversarialImage.l2))
        .join(AttackJob, AdversarialImage.attack_job_id == AttackJob.id)
        .join(Batch, AttackJob.batch_id == Batch.id)
        .where(Batch.dataset_id == dataset.id, AttackJob.submission_id.in_(attack_ids))
        .group_by(*key)
        .order_by(*key)
    )
    frame = pd.DataFrame([tuple(row) for row in session.execute(query)], columns=COLUMNS)
    return frame.astype({"linf_mean": float, "l2_mean": float, "l2_max": float})
