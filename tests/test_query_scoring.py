"""The query track's two rules against values worked out by hand (docs/query-track.md,
"Scoring"): the 2017 rule at an epsilon, and the AVC rule's medians, failures at infinity."""

import math

import numpy as np
import pandas as pd
import pytest

from arena.data.images import l2
from arena.results.intervals import median_rank
from arena.results.query_scoring import (
    COLUMNS,
    attack_scores,
    avc_interval_matrices,
    avc_matrix,
    cell_table,
    defense_scores,
    judged,
)

TRUE = {"i1": (10, 11), "i2": (20, 21), "i3": (30, 31)}  # image: (true label, target class)


def _row(attack: str, kind: str, defense: str, image: str, label: int | None, l2_: float, at4: int | None) -> list:
    true, target = TRUE[image]
    return [attack, kind, defense, image, true, target, 5, 0, 1, l2_, False, label, {"4": at4}]


#: attack A (untargeted) against D1 and D2, T (targeted) against D1; a None label is one
#: the defense never gave.
FRAME = pd.DataFrame([
    _row("A", "query_attack", "D1", "i1", 99, 3.0, 10),   # adversarial at 3; clipped: correct
    _row("A", "query_attack", "D1", "i2", 20, 1.0, 20),   # failed: worst
    _row("A", "query_attack", "D1", "i3", None, 5.0, 99),  # unanswered: misclassified, at 5
    _row("A", "query_attack", "D2", "i1", 10, 2.0, 10),   # failed
    _row("A", "query_attack", "D2", "i2", 7, 4.0, 7),     # adversarial at 4
    _row("A", "query_attack", "D2", "i3", 31, 6.0, None),  # adversarial at 6 (any wrong label)
    _row("T", "query_targeted", "D1", "i1", 11, 7.0, 11),  # hit at 7
    _row("T", "query_targeted", "D1", "i2", 99, 2.0, 20),  # wrong but not the target: failed
    _row("T", "query_targeted", "D1", "i3", None, 1.0, 31),  # unanswered is no hit: failed
], columns=COLUMNS)


def test_the_avc_rule_scores_attacks_by_their_median_l2_failures_at_the_worst():
    scores = attack_scores(FRAME, [4])
    # A: 3, inf, 5, inf, 4, 6 -> sorted 3 4 5 6 inf inf -> (5 + 6) / 2
    assert scores.loc["A", "avc_median_l2"] == 5.5
    # T: 7, inf, inf -> inf: more than half failed
    assert math.isinf(scores.loc["T", "avc_median_l2"])
    assert list(scores.index) == ["A", "T"]
    assert scores.loc["A", "adversarial"] == 4 and scores.loc["T", "adversarial"] == 1


def test_the_avc_rule_scores_defenses_by_the_smallest_adversarial_per_image():
    scores = defense_scores(FRAME, [4])
    # D1 per image, smallest over A and T: i1 min(3, 7) = 3, i2 inf, i3 min(5, inf) = 5 -> median 5
    assert scores.loc["D1", "avc_median_l2"] == 5.0
    # D2: i1 inf, i2 4, i3 6 -> median 6: the more robust
    assert scores.loc["D2", "avc_median_l2"] == 6.0
    assert list(scores.index) == ["D2", "D1"]


def test_the_2017_rule_counts_the_clipped_outputs():
    attacks, defenses = attack_scores(FRAME, [4]), defense_scores(FRAME, [4])
    assert attacks.loc["A", "successes@4"] == 3  # D1 i3 (99); D2 i2 (7) and i3 (unanswered)
    assert attacks.loc["T", "successes@4"] == 2  # hits on i1 and i3
    assert defenses.loc["D1", "correct@4"] == 3  # A: i1, i2; T: i2
    assert defenses.loc["D2", "correct@4"] == 1  # i1


def test_the_export_has_a_row_per_cell_and_a_label_column_per_epsilon():
    table = cell_table(FRAME, [4])
    assert len(table) == 9 and "label@4" in table and "labels_at" not in table
    assert list(judged(FRAME, [4])["smallest"].head(3)) == [3.0, math.inf, 5.0]


def test_l2_is_the_euclidean_norm_of_the_change():
    clean = np.zeros((2, 2, 3), np.uint8)
    adversarial = clean.copy()
    adversarial[0, 0, 0], adversarial[1, 1, 2] = 3, 4
    assert l2(clean, adversarial) == pytest.approx(5.0)


def test_each_avc_median_has_a_bootstrap_interval_over_images_around_it():
    attacks, defenses = attack_scores(FRAME, [4]), defense_scores(FRAME, [4])
    for scores, name in ((attacks, "A"), (defenses, "D2")):
        low, point, high = scores.loc[name, ["avc_low", "avc_median_l2", "avc_high"]]
        assert low <= point <= high and low < high
    # every cell equal: no spread
    flat = FRAME.assign(l2=2.0, label=1)
    low, high = attack_scores(flat, [4]).loc["A", ["avc_low", "avc_high"]]
    assert low == high == 2.0


@pytest.mark.parametrize("n, rank", [(5, 0), (6, 1), (10, 2), (20, 6), (100, 40)])
def test_the_sign_test_rank_is_the_textbook_one(n, rank):
    """The ranks of the classic tables (e.g. 40 and 61 of 100), and the property that makes
    them: the interval's coverage is 95% or more with this rank and less with the next."""
    def coverage(j: int) -> float:
        return 1 - 2 * sum(math.comb(n, k) for k in range(j)) / 2**n

    assert median_rank(n) == rank
    assert rank == 0 or coverage(rank) >= 0.95
    assert coverage(rank + 1) < 0.95


def test_each_avc_cell_has_the_sign_test_interval_of_its_images():
    """Ten images per pair: the interval is the 2nd smallest to the 2nd largest value (rank 2);
    a failure there is an infinite bound. Four images: too few, 0 to infinity."""
    rows = []
    for k, (label, l2_) in enumerate([(99, 5.0), (99, 1.0), (99, 9.0), (99, 3.0), (99, 7.0),
                                       (99, 2.0), (99, 8.0), (99, 4.0), (99, 6.0), (10, 10.0)]):
        rows.append(["A", "query_attack", "D1", f"j{k}", 10, 11, 5, 0, 1, l2_, False, label, {"4": 10}])
    for k, (label, l2_) in enumerate([(99, 1.0), (10, 1.0), (10, 1.0), (99, 2.0), (99, 3.0),
                                       (99, 4.0), (99, 5.0), (99, 6.0), (99, 7.0), (10, 1.0)]):
        rows.append(["A", "query_attack", "D2", f"j{k}", 10, 11, 5, 0, 1, l2_, False, label, {"4": 10}])
    cells = judged(pd.concat([pd.DataFrame(rows, columns=COLUMNS), FRAME[FRAME["attack"] == "T"]]), [4])
    low, high = avc_interval_matrices(cells)
    medians = avc_matrix(cells)
    # A x D1: 1 2 3 4 5 6 7 8 9 inf -> median 5.5, interval 2 to 9
    assert (low.loc["A", "D1"], medians.loc["A", "D1"], high.loc["A", "D1"]) == (2.0, 5.5, 9.0)
    # A x D2: 1 2 3 4 5 6 7 inf inf inf -> median 5.5, interval 2 to inf (a failure)
    assert (low.loc["A", "D2"], medians.loc["A", "D2"]) == (2.0, 5.5) and math.isinf(high.loc["A", "D2"])
    # T x D1: three images: no bound at 95%
    assert low.loc["T", "D1"] == 0.0 and math.isinf(high.loc["T", "D1"])
    assert math.isnan(low.loc["T", "D2"]) and math.isnan(high.loc["T", "D2"])  # never ran
