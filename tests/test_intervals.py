"""The bootstrap over images (results/intervals.py), against figures computed by hand: the
exact binomial quantiles of the matrix cells, the coverage of the 95% interval on samples of
a known binomial, and the paired probability that one rank beats the next."""

import itertools
import warnings

import numpy as np
import pytest

from arena.results.intervals import Resampling, beats, binomial_interval, percentile_interval, resampling_weights


def test_a_cell_interval_is_the_binomial_bootstrap_exactly():
    # 1 error in 10 answers: resampling the 10 gives Binomial(10, 0.1) errors. Its CDF is 0.349 at 0
    # (above 2.5%) and 0.930 at 2, 0.987 at 3 (the first above 97.5%): the interval is 0 to 3 errors.
    low, high = binomial_interval(np.array([1, 0, 10, 5]), np.array([10, 10, 10, 0]))
    assert low.tolist()[:3] == [0.0, 0.0, 1.0] and high.tolist()[:3] == [0.3, 0.0, 1.0]
    assert np.isnan(low[3]) and np.isnan(high[3])  # no answers: no interval
    # 2 of 4: Binomial(4, 0.5) has CDF 0.0625 at 0 and 0.9375 at 3: 0 to 4 of 4.
    assert [float(v[0]) for v in binomial_interval(np.array([2]), np.array([4]))] == [0.0, 1.0]


def test_resampling_a_zero_one_figure_agrees_with_the_exact_cell_interval():
    answers = np.zeros(200)
    answers[:57] = 1
    resampling = Resampling(resampling_weights(200, replicates=4000))
    resampling.rate("rate", answers[None, :], np.ones((1, 200)))
    figure = resampling.run()["rate"]
    low, high = binomial_interval(np.array([57]), np.array([200]))
    assert figure.point[0] == pytest.approx(57 / 200)
    assert abs(figure.low[0] - low[0]) <= 0.01 and abs(figure.high[0] - high[0]) <= 0.01


def test_the_interval_holds_the_true_rate_about_95_times_in_100():
    """Samples of 300 images from a known binomial (p = 0.3): the interval over each sample's
    images contains p in close to 95% of the samples."""
    rng = np.random.default_rng(7)
    samples = (rng.random((400, 300)) < 0.3).astype(float)
    resampling = Resampling(resampling_weights(300))
    resampling.rate("rate", samples, np.ones_like(samples))
    figure = resampling.run()["rate"]
    covered = np.mean((figure.low <= 0.3) & (0.3 <= figure.high))
    assert 0.91 <= covered <= 0.98, covered


def test_a_score_interval_has_whole_bounds_around_the_score():
    counts = np.array([[0, 1, 2, 3, 4, 0, 1, 2]])
    resampling = Resampling(resampling_weights(8))
    resampling.count("score", counts)
    figure = resampling.run()["score"]
    assert figure.point[0] == 13 and figure.low[0] < 13 < figure.high[0]
    assert figure.low[0] == int(figure.low[0]) and figure.high[0] == int(figure.high[0])


@pytest.mark.parametrize("replicates", [1000, 40, 1])
def test_the_quantiles_are_numpys_inverted_cdf_with_undefined_resamples_left_out(replicates):
    values = np.random.default_rng(replicates).integers(0, 30, (replicates, 6)).astype(float)
    values[: replicates // 3, 1] = np.nan  # a rate some resamples leave undefined
    values[:, 2] = np.nan  # one no resample defines
    low, high = percentile_interval(values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy says so of the all-NaN column
        expected = np.nanquantile(values, [0.025, 0.975], axis=0, method="inverted_cdf")
    np.testing.assert_array_equal(low, expected[0])
    np.testing.assert_array_equal(high, expected[1])


def test_beats_counts_ties_half():
    assert beats(np.array([3, 2, 1, 1]), np.array([1, 2, 2, 1])) == 0.5  # one win, two ties, one loss
    assert beats(np.array([2, 2]), np.array([1, 1])) == 1.0


def test_the_rank_probability_is_paired_over_the_same_images():
    """X gets images 0, 1, 2 right, Y images 0 and 1. Resampling 3 images, X beats Y unless
    image 2 is never drawn, (2/3)^3 = 8/27 of the time, when they tie: X beats Y with
    probability 19/27 + 8/27 / 2 = 23/27. Resampled apart (unpaired), X would often lose."""
    correct = np.array([[1, 1, 1], [1, 1, 0]])
    resampling = Resampling(resampling_weights(3, replicates=20_000))
    resampling.count("score", correct)
    score = resampling.run()["score"]
    assert beats(score.replicates[:, 0], score.replicates[:, 1]) == pytest.approx(23 / 27, abs=0.01)
    exact = np.mean([(np.bincount(draw, minlength=3) @ (correct[0] - correct[1]) > 0)
                     + 0.5 * (np.bincount(draw, minlength=3) @ (correct[0] - correct[1]) == 0)
                     for draw in itertools.product(range(3), repeat=3)])
    assert exact == pytest.approx(23 / 27)


def test_the_same_data_gives_the_same_intervals():
    data = np.random.default_rng(3).integers(0, 5, (4, 50))

    def interval():
        resampling = Resampling(resampling_weights(50))
        resampling.rate("r", data, np.full_like(data, 4))
        figure = resampling.run()["r"]
        return figure.low.tolist(), figure.high.tolist()

    assert interval() == interval()
    resampling_weights.cache_clear()
    assert interval() == interval()
    with pytest.raises(ValueError):
        resampling_weights(50)[0, 0] = 7  # shared by every leaderboard: read-only
