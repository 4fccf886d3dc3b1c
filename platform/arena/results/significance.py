"""Whether two conditions on the same images differ: McNemar's exact test.

Two defenses (or one defense against two attacks) answer the same images, so their error
rates are paired: only the images on which they disagree carry information. Of those
``b + c`` discordant images, ``b`` went one way and ``c`` the other; were the conditions
alike, each would go either way with probability 1/2. The exact test is the binomial
tail of that, two-sided, with no large-sample approximation (the study's cells have few
discordant images)."""

from math import comb


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided p-value: the chance of a split at least this uneven if the conditions were alike."""
    if only_first < 0 or only_second < 0:
        raise ValueError("discordant counts cannot be negative")
    discordant = only_first + only_second
    if discordant == 0:
        return 1.0
    smaller = min(only_first, only_second)
    tail = sum(comb(discordant, k) for k in range(smaller + 1))
    return min(1.0, 2 * tail / 2**discordant)
