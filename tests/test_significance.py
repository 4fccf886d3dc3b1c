"""McNemar's exact test (results/significance.py) against p-values worked out by hand."""

import pytest

from arena.results.significance import mcnemar_exact


def test_no_disagreement_says_nothing():
    assert mcnemar_exact(0, 0) == 1.0


def test_an_even_split_is_no_evidence():
    assert mcnemar_exact(5, 5) == 1.0


def test_hand_computed_tails():
    # 0 of 5 discordant one way: 2 * (1/2)^5 = 0.0625, not below 0.05 however lopsided
    assert mcnemar_exact(5, 0) == pytest.approx(0.0625)
    assert mcnemar_exact(0, 5) == pytest.approx(0.0625)
    # 1 of 10: 2 * (1 + 10) / 1024
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    # 3 of 10: 2 * (1 + 10 + 45 + 120) / 1024
    assert mcnemar_exact(7, 3) == pytest.approx(352 / 1024)


def test_large_counts_stay_exact_and_bounded():
    assert 0 < mcnemar_exact(400, 520) < 0.001
    assert mcnemar_exact(500, 501) == 1.0


def test_negative_counts_are_refused():
    with pytest.raises(ValueError, match="negative"):
        mcnemar_exact(-1, 3)
