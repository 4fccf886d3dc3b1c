"""Worst case per image: which images no attack could make a defense get wrong, and which
images only one attack could.

A sum over attacks (the 2017 defense score) rewards a defense that resists many weak
attacks; the worst case asks, image by image, whether *any* attack broke it (RobustBench
and AutoAttack rate defenses so). For a defense d, an epsilon and an image x, with the
attacks counted (every accepted one, or a chosen set):

- x is **settled** when d has answered x clean and the output of every counted attack on x
  at that epsilon. Only settled images count: until then a later answer could break it.
- x is **robust** when it is settled, d labels the clean x correctly, and d makes no error
  (``judging``'s, so a missing or invalid answer breaks it) on any attack's output. The
  clean image is the output of an attack that gives up: the platform puts it in place of a
  missing output, where it is judged like any other, so an image the defense gets wrong
  clean is broken from the start and no attack is needed to break it.
- x is **broken only by** attack a when it is settled, d labels the clean x correctly, and
  a's output is the only one d gets wrong: a's unique contribution.

Nothing here reads the database: it works on ``ImageOutcomes``.
"""

import numpy as np
import pandas as pd

from arena.results.intervals import Resampling, resampling_weights
from arena.results.outcomes import ImageOutcomes
from arena.results.scoring import Names


def settled(outcomes: ImageOutcomes) -> np.ndarray:
    """(defenses, epsilons, images): answered clean and on every counted attack's output."""
    return (outcomes.answered == len(outcomes.attacks)) & outcomes.clean_answered[:, None, :] & (len(outcomes.attacks) > 0)


def robust(outcomes: ImageOutcomes) -> np.ndarray:
    """(defenses, epsilons, images): settled, right on the clean image and on every output."""
    return settled(outcomes) & outcomes.clean_correct[:, None, :] & (outcomes.errors == 0)


def unique_breaks(outcomes: ImageOutcomes) -> np.ndarray:
    """(counted attacks, epsilons, images): for how many defenses this attack's output was
    the only one, of a settled image labelled right when clean, that the defense got wrong."""
    alone = settled(outcomes) & outcomes.clean_correct[:, None, :] & (outcomes.errors == 1)
    _, epsilon, image = np.nonzero(alone)
    attack = np.searchsorted(outcomes.attacks, outcomes.breakers[alone])
    counts = np.zeros((len(outcomes.attacks), len(outcomes.epsilons), len(outcomes.images)), dtype=np.int64)
    np.add.at(counts, (attack, epsilon, image), 1)
    return counts


def robust_accuracy(outcomes: ImageOutcomes, names: Names, epsilons: list[int]) -> pd.DataFrame:
    """Per accepted defense (indexed by id): the worst-case robust accuracy over every epsilon
    and at each, with its interval, and the (image, epsilon) pairs it is over (settled).
    Over every epsilon it is the share of the settled (image, epsilon) pairs that are robust."""
    robust_, settled_ = robust(outcomes), settled(outcomes)
    resampling = Resampling(resampling_weights(len(outcomes.images)))
    scored = {}
    for suffix, pick in _epsilon_views(outcomes, epsilons):
        resampling.rate(f"worst_case{suffix}", pick(robust_), pick(settled_))
        scored[f"worst_case{suffix}_high"] = (f"worst_case_scored{suffix}", pick(settled_).sum(axis=1))
    table = _table(outcomes.defenses, resampling)
    for after, (column, values) in scored.items():  # each count right after its figure's interval
        table.insert(table.columns.get_loc(after) + 1, column, values)
    return _named(table, names)


def unique_contributions(outcomes: ImageOutcomes, names: Names, epsilons: list[int]) -> pd.DataFrame:
    """Per counted attack (indexed by id): how many (defense, epsilon, image) it alone broke,
    over every epsilon and at each, with intervals over images."""
    unique = unique_breaks(outcomes)
    resampling = Resampling(resampling_weights(len(outcomes.images)))
    for suffix, pick in _epsilon_views(outcomes, epsilons):
        resampling.count(f"unique{suffix}", pick(unique))
    return _named(_table(outcomes.attacks, resampling).astype("int64"), names)


def _epsilon_views(outcomes: ImageOutcomes, epsilons: list[int]):
    """("", every epsilon summed) then ("_eps=N", epsilon N alone), each a function of a
    (subjects, epsilons, images) array giving (subjects, images)."""
    yield "", lambda array: array.sum(axis=1)
    for eps in epsilons:
        at = outcomes.epsilons.index(eps) if eps in outcomes.epsilons else None
        yield f"_eps={eps}", (lambda array, at=at: array[:, at] if at is not None
                              else np.zeros(array.shape[::2], dtype=array.dtype))


def _table(ids: np.ndarray, resampling: Resampling) -> pd.DataFrame:
    """One row per subject: each figure resampled, beside its low and high bounds."""
    columns = {}
    for key, figure in resampling.run().items():
        columns.update({key: figure.point, f"{key}_low": figure.low, f"{key}_high": figure.high})
    return pd.DataFrame(columns, index=pd.Index(ids, name="id"))


def _named(table: pd.DataFrame, names: Names) -> pd.DataFrame:
    named = names.frame.loc[table.index, ["submission", "team"]]
    return pd.concat([named, table], axis=1)
