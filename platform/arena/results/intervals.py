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

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

REPLICATES = 1000
SEED = 2017
LEVEL = 0.95


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
    """Low and high bounds of each column of ``replicates`` (resamples down, figures across),
    NaN (an undefined resample) left out; a column with none defined has NaN bounds.

    The quantiles are numpy's ``inverted_cdf`` (the smallest value at least a share q of the
    resamples reach), computed with one sort of the whole array: ``np.nanquantile`` takes one
    column at a time, several times slower at thousands of columns."""
    tail = (1 - level) / 2
    ordered = np.sort(replicates, axis=0)  # NaN last
    defined = np.count_nonzero(~np.isnan(replicates), axis=0)

    def quantile(q: float) -> np.ndarray:
        rank = np.ceil(q * defined - 1e-9).astype(np.int64)  # 1-based; the tolerance keeps 0.975 * 1000 at 975
        at = np.clip(rank - 1, 0, max(len(ordered) - 1, 0))
        values = np.take_along_axis(ordered, at[None, :], axis=0)[0] if len(ordered) else np.zeros(len(at))
        return np.where(defined > 0, values, np.nan)

    return quantile(tail), quantile(1 - tail)


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
    numerator (and, for a rate, a denominator) per subject; ``run`` resamples them all in one
    matrix product. An array passed for several figures (a score's numerator is also its
    normalized rate's) is resampled once.

    A count (a score) is the sum of its numerator; a rate is the sum of its numerator over
    the sum of its denominator, in the data as in each resample (a resample that draws none
    of a subject's scored images leaves its rate undefined and out of the quantiles)."""

    weights: np.ndarray  # (replicates, images)
    _blocks: list[np.ndarray] = field(default_factory=list)  # each distinct (subjects, images) array
    _block_of: dict[int, int] = field(default_factory=dict)  # id(array) -> its place in _blocks
    _figures: list[tuple[str, int, int | None]] = field(default_factory=list)  # key, numerator, denominator

    def count(self, key: str, numerator: np.ndarray) -> None:
        """A count per subject: ``numerator`` is (subjects, images)."""
        self._figures.append((key, self._block(numerator), None))

    def rate(self, key: str, numerator: np.ndarray, denominator: np.ndarray) -> None:
        """A rate per subject: both (subjects, images)."""
        self._figures.append((key, self._block(numerator), self._block(denominator)))

    def _block(self, array: np.ndarray) -> int:
        if id(array) not in self._block_of:
            self._block_of[id(array)] = len(self._blocks)
            self._blocks.append(array)  # held, so that no other array takes its id meanwhile
        return self._block_of[id(array)]

    def run(self, level: float = LEVEL) -> dict[str, Figure]:
        if not self._figures:
            return {}
        stacked = np.concatenate([np.asarray(block, dtype=np.float32) for block in self._blocks])
        ends = np.cumsum([len(block) for block in self._blocks])
        rows = [slice(end - len(block), end) for end, block in zip(ends, self._blocks)]
        resampled = self.weights @ stacked.T  # (replicates, rows): whole numbers, exactly, in float32
        totals = stacked.sum(axis=1, dtype=np.float64)
        subjects = [len(self._blocks[numerator]) for _, numerator, _ in self._figures]
        replicates = np.empty((len(self.weights), sum(subjects)))
        points = np.empty(sum(subjects))
        columns = np.cumsum([0, *subjects])
        for (_, numerator, denominator), start, stop in zip(self._figures, columns[:-1], columns[1:]):
            top, total = resampled[:, rows[numerator]], totals[rows[numerator]]
            if denominator is None:
                replicates[:, start:stop], points[start:stop] = top, total
                continue
            bottom, scored = resampled[:, rows[denominator]], totals[rows[denominator]]
            with np.errstate(invalid="ignore", divide="ignore"):  # whole numbers divided in float64: 0.8072, not 0.8072000146
                replicates[:, start:stop] = np.where(bottom > 0, np.divide(top, bottom, dtype=np.float64), np.nan)
                points[start:stop] = np.where(scored > 0, total / scored, np.nan)
        low, high = percentile_interval(replicates, level)
        return {key: Figure(points[start:stop], low[start:stop], high[start:stop], replicates[:, start:stop])
                for (key, _, _), start, stop in zip(self._figures, columns[:-1], columns[1:])}


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


@lru_cache(maxsize=1024)
def median_rank(n: int, level: float = LEVEL) -> int:
    """The rank j (from 1) such that the j-th smallest and the j-th largest of n values bound
    their population's median with probability at least ``level``: the sign test's interval,
    distribution-free, exact, and needing no resampling (each bound is a value of the data, so
    a failure at infinity stays one). 0 where n is too small for any such pair (fewer than six
    values at 95%): the interval is unbounded then.

    The median lies below the j-th smallest value only if at most j - 1 values fall below it,
    which has probability P(Binomial(n, 1/2) <= j - 1); so j is one more than the largest k
    whose lower tail stays within (1 - level) / 2."""
    tail, below, rank = (1 - level) / 2, 0.0, 0
    for k in range(n + 1):
        below += math.comb(n, k) / 2**n
        if below > tail:
            break
        rank = k + 1
    return rank
