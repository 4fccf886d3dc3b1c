"""95% bootstrap intervals over images, and the chance that one rank really beats the next.

The unit of resampling is the image: the tournament's images are a sample of the images
the tournament stands for, and every figure (a score, a rate, a worst case) is a sum over
them. One resample draws the dataset's I images with replacement; ``resampling_weights``
says how often each image is drawn in each of ``REPLICATES`` resamples. Every figure of
every submission is resampled with the *same* weights, so a figure is one column of one
matrix product (fast, numpy), and two submissions are compared on the same resampled
images (a paired bootstrap: what both get right or wrong cancels out).

The weights depend only on the number of images and the seed, so the same data gives the
same intervals on every run, process and machine.

An interval is the percentile interval: the 2.5% and 97.5% quantiles of the resampled
figure, taken as values the resamples reached (``inverted_cdf``), so a count's interval has
whole-number bounds.
"""

import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

REPLICATES = 1000
SEED = 2017
LEVEL = 0.95
_QUANTILE = "inverted_cdf"


@lru_cache(maxsize=4)
def resampling_weights(images: int, replicates: int = REPLICATES, seed: int = SEED) -> np.ndarray:
    """(replicates, images): how many times each image is drawn in each resample.

    float32 so that the products are one fast matrix multiplication; the products stay
    whole numbers, exactly, as long as a figure's total is under 2**24 (a 2017-size
    defense score is at most 2 million). Cached and read-only: a leaderboard refresh
    reuses them."""
    rng = np.random.default_rng(seed)
    weights = (rng.multinomial(images, np.full(images, 1 / images), size=replicates) if images
               else np.zeros((replicates, 0))).astype(np.float32)
    weights.flags.writeable = False
    return weights


def percentile_interval(replicates: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Low and high bounds of each column of ``replicates`` (resamples down, figures across);
    a column whose resamples are all undefined (NaN) has NaN bounds."""
    tail = (1 - level) / 2
    if replicates.shape[0] == 0 or replicates.shape[1] == 0:
        empty = np.full(replicates.shape[1], np.nan)
        return empty, empty.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: no data, NaN bounds
        low, high = np.nanquantile(replicates, [tail, 1 - tail], axis=0, method=_QUANTILE)
    return low, high


def beats(upper: np.ndarray, lower: np.ndarray) -> float:
    """The share of resamples in which ``upper`` scores more than ``lower``, ties counted half:
    the probability that the upper of two adjacent ranks really beats the lower one (0.5:
    the images cannot tell them apart)."""
    return float(np.mean(upper > lower) + 0.5 * np.mean(upper == lower))


@dataclass(frozen=True)
class Figure:
    """One figure for each of several subjects, resampled: its point value, its interval,
    and (kept for ranking) its replicates."""

    point: np.ndarray  # (subjects,)
    low: np.ndarray
    high: np.ndarray
    replicates: np.ndarray  # (replicates, subjects)


@dataclass
class Resampling:
    """Figures of many subjects resampled together: each figure added is a per-image
    numerator (and, for a rate, a denominator) per subject; ``run`` resamples them all in
    two matrix products.

    A count (a score) is the sum of its numerator; a rate is the sum of its numerator over
    the sum of its denominator, in the data as in each resample (a resample that draws none
    of a subject's scored images leaves its rate undefined and out of the quantiles)."""

    weights: np.ndarray  # (replicates, images)
    _numerators: list[np.ndarray] = field(default_factory=list)
    _denominators: list[np.ndarray] = field(default_factory=list)
    _keys: list[tuple[str, int, bool]] = field(default_factory=list)

    def count(self, key: str, numerator: np.ndarray) -> None:
        """A count per subject: ``numerator`` is (subjects, images)."""
        self._add(key, numerator, None)

    def rate(self, key: str, numerator: np.ndarray, denominator: np.ndarray) -> None:
        """A rate per subject: both (subjects, images)."""
        self._add(key, numerator, denominator)

    def _add(self, key: str, numerator: np.ndarray, denominator: np.ndarray | None) -> None:
        self._numerators.append(np.asarray(numerator, dtype=np.float32))
        self._denominators.append(np.asarray(numerator if denominator is None else denominator, dtype=np.float32))
        self._keys.append((key, len(numerator), denominator is not None))

    def run(self, level: float = LEVEL) -> dict[str, Figure]:
        if not self._keys:
            return {}
        numerators = np.concatenate(self._numerators)  # (figures x subjects, images)
        denominators = np.concatenate(self._denominators)
        resampled_numerators = (self.weights @ numerators.T).astype(np.float64)
        rates = np.array([is_rate for _, subjects, is_rate in self._keys for _ in range(subjects)], dtype=bool)
        replicates = resampled_numerators.copy()
        if rates.any():
            resampled_denominators = (self.weights @ denominators[rates].T).astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                replicates[:, rates] = np.where(resampled_denominators > 0,
                                                resampled_numerators[:, rates] / resampled_denominators, np.nan)
        totals, scored = numerators.sum(axis=1, dtype=np.float64), denominators.sum(axis=1, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            points = np.where(rates, np.where(scored > 0, totals / scored, np.nan), totals)
        low, high = percentile_interval(replicates, level)
        figures, start = {}, 0
        for key, subjects, _ in self._keys:
            part = slice(start, start + subjects)
            figures[key] = Figure(points[part], low[part], high[part], replicates[:, part])
            start += subjects
        return figures


def binomial_interval(successes: np.ndarray, trials: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """The percentile bootstrap interval of k successes in n 0-or-1 answers, as rates, exactly.

    Resampling n answers that hold k successes gives Binomial(n, k/n) successes, so the
    bootstrap's quantiles are that distribution's: computed here from its probabilities
    (through a table of log factorials, over a window of ten standard deviations each side,
    outside which the probability is below 1e-20) rather than by drawing resamples. This is
    what the matrix cells use: their counts are all the cache holds. NaN where n = 0."""
    k = np.asarray(successes, dtype=np.int64).ravel()
    n = np.asarray(trials, dtype=np.int64).ravel()
    shape = np.shape(successes)
    low, high = np.full(k.shape, np.nan), np.full(k.shape, np.nan)
    tail = (1 - level) / 2
    some = n > 0
    p = np.divide(k, n, out=np.zeros(k.shape), where=some)
    degenerate = some & ((k == 0) | (k == n))
    low[degenerate] = high[degenerate] = p[degenerate]
    spread = some & ~degenerate
    if spread.any():  # a matrix has many cells with the same counts: each pair is computed once
        pairs, back = np.unique(np.stack([k[spread], n[spread]]), axis=1, return_inverse=True)
        pair_low, pair_high = _binomial_quantiles(pairs[1], pairs[0] / pairs[1], tail)
        low[spread], high[spread] = pair_low[back.ravel()], pair_high[back.ravel()]
    return low.reshape(shape), high.reshape(shape)


def _binomial_quantiles(n: np.ndarray, p: np.ndarray, tail: float, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, int(n.max()) + 1)))])
    low, high = np.empty(len(n)), np.empty(len(n))
    for start in range(0, len(n), chunk):
        part = slice(start, start + chunk)
        low[part], high[part] = _window_quantiles(n[part], p[part], tail, log_factorial)
    return low / n, high / n


def _window_quantiles(n, p, tail, log_factorial):
    sd = np.sqrt(n * p * (1 - p))
    first = np.maximum(0, np.floor(n * p - 10 * sd - 1)).astype(np.int64)
    width = int(np.max(np.minimum(n - first, np.ceil(20 * sd + 3)))) + 1
    k = first[:, None] + np.arange(width)[None, :]
    inside = k <= n[:, None]
    k = np.minimum(k, n[:, None])
    log_pmf = (log_factorial[n][:, None] - log_factorial[k] - log_factorial[n[:, None] - k]
               + k * np.log(p)[:, None] + (n[:, None] - k) * np.log1p(-p)[:, None])
    cdf = np.cumsum(np.where(inside, np.exp(log_pmf), 0.0), axis=1)
    low = first + np.argmax(cdf >= tail - 1e-12, axis=1)
    high = first + np.argmax(cdf >= 1 - tail - 1e-12, axis=1)
    return low, high
