"""The source document's findings, each set against this run's numbers with a verdict.

Each finding quotes the source document (or its tables) exactly, then states what the
stored results say, with numbers read from the report's tables, then whether the finding
holds here. The verdict rules are written in the code beside each finding, so a reader can
check why a sentence says what it says; none of the wording is fixed in advance of the data.
"""

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from arena.tools.study_tables import (
    ADAPTIVE,
    ATTACKERS,
    FILTER_PAIRS,
    FULL_ATTACK,
    HELD_OUT,
    SOURCE_TABLE_3,
    TRANSFER_ATTACK,
    Change,
    paired,
)

#: Below this, McNemar's p says the photos tell two paired rates apart.
SIGNIFICANT = 0.05
SMOOTH_ATTACK = "smoothed_ifgsm"


@dataclass
class Tables:
    """What the findings read: the per-image answers with names, the rates with intervals,
    the epsilons, and the report's other tables."""

    frame: pd.DataFrame
    rates: pd.DataFrame
    epsilons: list[int]
    clean: pd.DataFrame
    budgets: pd.DataFrame
    hits: pd.DataFrame

    def rate(self, attack: str, defense: str, epsilon: int) -> float | None:
        cell = self.rates[(self.rates["attack"] == attack) & (self.rates["defense"] == defense)
                          & (self.rates["epsilon"] == epsilon)]
        return float(cell["rate"].iloc[0]) if len(cell) else None

    def change(self, epsilon: int, first: tuple[str, str], second: tuple[str, str]) -> Change | None:
        return paired(self.frame, epsilon, first, second)

    def has(self, *attacks: str) -> bool:
        return set(attacks) <= set(self.frame["attack"])


def _pct(value: float) -> str:
    return f"{value:.1f}%"


def _line(source: str, here: str, verdict: str) -> str:
    return f"- **Source:** {source}\n  **Here:** {here}\n  **Verdict:** {verdict}"


def white_box(t: Tables) -> str | None:
    """Holds when the white-box attacks fool at least 95% of the unfiltered models' photos."""
    top = max(t.epsilons)
    cells = [(a, d, t.rate(a, d, top)) for a, d in (("ifgsm", "lite0"), (FULL_ATTACK, "ensemble"))]
    cells = [(a, d, r) for a, d, r in cells if r is not None]
    if not cells:
        return None
    here = "; ".join(f"{a} against {d} misclassifies {_pct(r)} at eps {top}" for a, d, r in cells)
    lowest = min(r for _, _, r in cells)
    verdict = ("holds: white-box attacks fool nearly every photo" if lowest >= 95 else
               f"does not hold: the white-box attacks here reach {_pct(lowest)} at the least")
    return _line("CW “is currently best algorithm generating strong attacks with about 100% ratio fooling samples "
                 "on white-box attacks”.", here + ".", verdict + ".")


def filter_alone(t: Tables) -> str | None:
    """Holds when the filter lowers no model's rate significantly against the attacker that
    holds the models (the source's claim is about models not adversarially trained)."""
    top = max(t.epsilons)
    if not t.has(FULL_ATTACK):
        return None
    pairs = [(plain, t.change(top, (FULL_ATTACK, plain), (FULL_ATTACK, filtered))) for plain, filtered in FILTER_PAIRS.items()]
    pairs = [(plain, c) for plain, c in pairs if c]
    if not pairs:
        return None
    here = "; ".join(f"{plain} {_pct(c.first)} → {_pct(c.second)} (p {c.p:.2g})" for plain, c in pairs)
    helped = [f"{plain} ({c.points:+.1f} points, p {c.p:.2g})" for plain, c in pairs if c.points < 0 and c.p < SIGNIFICANT]
    verdict = ("holds: the filter lowers no model's rate by more than the photos can tell from chance" if not helped
               else f"does not hold for {', '.join(helped)}, where the filter lowers the rate significantly")
    return _line("“using median filtering alone is not giving any defense against strong attacks”; on models not "
                 "adversarially trained “misclassification ratio differences are small”.",
                 f"{FULL_ATTACK} at eps {top}, without → with the filter: {here}.", verdict + ".")


def held_out(t: Tables) -> str | None:
    """Holds when no eps shows a significant change on the held-out model under the transfer attack."""
    changes = {e: t.change(e, (TRANSFER_ATTACK, HELD_OUT), (TRANSFER_ATTACK, FILTER_PAIRS[HELD_OUT])) for e in t.epsilons}
    changes = {e: c for e, c in changes.items() if c}
    if not changes:
        return None
    here = "; ".join(f"eps {e}: {_pct(c.first)} → {_pct(c.second)} (p {c.p:.2g})" for e, c in changes.items())
    differing = [e for e, c in changes.items() if c.p < SIGNIFICANT]
    verdict = ("holds: at no eps can the photos tell the filtered held-out model from the unfiltered one" if not differing
               else f"does not hold at eps {', '.join(map(str, differing))}, where the change is significant")
    return _line("“On our hold-out inception_v4 model, with median filtering performs nearly same as without median "
                 "filtering” (Tables 1 and 2: 80.63% and 75.63% against its `*` ensemble attacker).",
                 f"{HELD_OUT}, held out by {TRANSFER_ATTACK}, without → with the filter: {here}.", verdict + ".")


def table_3(t: Tables) -> str | None:
    """Holds when the filtered ensemble is fooled at least twice less often at every eps, the
    least the source's Table 3 shows (2.3 times at eps 16)."""
    ratios = {}
    for e in t.epsilons:
        c = t.change(e, (FULL_ATTACK, "ensemble"), (FULL_ATTACK, "median_ensemble"))
        if c and c.second > 0:
            ratios[e] = c
    if not ratios:
        return None
    source = ", ".join(f"{without / with_:.1f}× at eps {e}" for e, (without, with_) in SOURCE_TABLE_3.items())
    here = "; ".join(f"eps {e}: {_pct(c.first)} → {_pct(c.second)}, {c.first / c.second:.2f}× (p {c.p:.2g})"
                     for e, c in ratios.items())
    here_ratios = [c.first / c.second for c in ratios.values()]
    verdict = ("holds" if min(here_ratios) >= 2 else
               f"does not hold: here the filtered ensemble is fooled {min(here_ratios):.2f}× to {max(here_ratios):.2f}× "
               "less often, against 2.3× to 8.6× in the source; the source's ensemble was adversarially trained, and the "
               "source concludes that “adversarially trained models with filtering are indeed robust”")
    return _line(f"Table 3: against `**`, whose models include the defended ones, the filtered best ensemble was "
                 f"fooled less often: {source}.", f"{FULL_ATTACK} against the ensemble, without → with the filter: "
                 f"{here}.", verdict + ".")


def lower_eps(t: Tables) -> str | None:
    """Holds when the filtered ensemble's rate rises with eps, the smallest eps's rate lies below
    the largest's interval, and at the smallest eps the ensemble is robust on most photos (the
    source's 10.6%); in direction only when it rises but stays fooled on most photos."""
    curve = {e: t.rate(FULL_ATTACK, "median_ensemble", e) for e in t.epsilons}
    curve = {e: r for e, r in curve.items() if r is not None}
    if len(curve) < 2:
        return None
    ordered = [curve[e] for e in sorted(curve)]
    top = t.rates[(t.rates["attack"] == FULL_ATTACK) & (t.rates["defense"] == "median_ensemble")
                  & (t.rates["epsilon"] == max(curve))]
    rising = all(a <= b for a, b in zip(ordered, ordered[1:]))
    below = ordered[0] < float(top["low"].iloc[0])
    here = ", ".join(f"{_pct(curve[e])} at eps {e}" for e in sorted(curve))
    low = min(curve)
    if not rising:
        verdict = "does not hold: the filtered ensemble's rate does not rise with eps"
    elif not below:
        verdict = "holds in direction only: the rate rises with eps, but the smallest eps's rate is inside the largest's interval"
    elif curve[low] > 50:
        verdict = (f"holds in direction only: the rate rises with eps, but at eps {low} the filtered ensemble is still "
                   f"fooled on {_pct(curve[low])} of the photos, where the source's was on 10.6%")
    else:
        verdict = "holds"
    return _line("“in case of lower eps values this defense approach is more robust against attacks” (Table 3: "
                 "10.6% at eps 2 to 43.1% at eps 16).", f"the filtered ensemble against {FULL_ATTACK}: {here}.",
                 verdict + ".")


def smooth(t: Tables) -> str | None:
    """Holds when the smoothed attack fools the filtered white-box model on at least half the photos."""
    top = max(t.epsilons)
    seen, transferred = t.rate(SMOOTH_ATTACK, "median_lite0", top), t.rate(SMOOTH_ATTACK, "median_lite2", top)
    if seen is None:
        return None
    here = f"{SMOOTH_ATTACK} (made on Lite0) fools median_lite0 on {_pct(seen)} at eps {top}"
    if transferred is not None:
        here += f", and transfers to median_lite2 on {_pct(transferred)}"
    verdict = "holds" if seen >= 50 else f"does not hold: {_pct(seen)} is below the source's 50%"
    return _line("smooth adversarial samples “can fool spatially smoothed defenses with as high as 50-60% ratio and "
                 "with high transferability”.", here + ".", verdict + ".")


def adaptive(t: Tables) -> str | None:
    """Beyond the source: whether attacking through the filter erases what it bought. The
    filtered ensemble under the strongest adaptive attack is set against the unfiltered
    ensemble under the non-adaptive one, photo by photo."""
    if not t.has(FULL_ATTACK, *ADAPTIVE):
        return None
    low = min(t.epsilons)
    parts = []
    for e in (low, max(t.epsilons)):
        for attack in ADAPTIVE:
            c = t.change(e, (FULL_ATTACK, "median_ensemble"), (attack, "median_ensemble"))
            if c:
                parts.append(f"{attack} at eps {e}: {_pct(c.first)} → {_pct(c.second)} (p {c.p:.2g})")
    strongest = max(ADAPTIVE, key=lambda a: t.rate(a, "median_ensemble", low) or 0.0)
    gain = t.change(low, (FULL_ATTACK, "ensemble"), (FULL_ATTACK, "median_ensemble"))
    erased = t.change(low, (FULL_ATTACK, "ensemble"), (strongest, "median_ensemble"))
    if not parts or gain is None or erased is None:
        return None
    kept = erased.points < 0 and erased.p < SIGNIFICANT
    verdict = (f"at eps {low} the filter lowered {FULL_ATTACK}'s rate on the ensemble by {-gain.points:.1f} points "
               f"(p {gain.p:.2g}); under {strongest} the filtered ensemble is fooled on {_pct(erased.second)}, against "
               f"{_pct(erased.first)} for the unfiltered ensemble under {FULL_ATTACK} (p {erased.p:.2g}): "
               + ("the filter keeps part of its effect" if kept else "an attack that knows the filter takes its gain back"))
    return _line("the source's attacks were not made through the filter (it does not test adaptive attacks).",
                 f"the filtered ensemble against {FULL_ATTACK} → against the adaptive attacks: {'; '.join(parts)}.",
                 verdict + ".")


def raised(t: Tables) -> str | None:
    """Beyond the source: cells where the filter made the ensemble worse under attacks that do
    not know it (an attack made through the filter is expected to do better against it), and
    the filter's clean cost."""
    worse, significant = [], []
    unaware = sorted(a for a in set(t.frame["attack"]) if not (a in ATTACKERS and ATTACKERS[a].through_filter))
    for e in t.epsilons:
        for attack in unaware:
            c = t.change(e, (attack, "ensemble"), (attack, "median_ensemble"))
            if c and c.points > 0:
                worse.append((attack, e, c))
                if c.p < SIGNIFICANT:
                    significant.append(f"{attack} at eps {e} ({_pct(c.first)} → {_pct(c.second)}, p {c.p:.2g})")
    clean = t.clean["clean top-1 (%)"]
    cost = (f"; clean top-1 is {clean['ensemble']} without and {clean['median_ensemble']} with it"
            if {"ensemble", "median_ensemble"} <= set(clean.index) else "")
    cells = len(t.epsilons) * len(unaware)
    here = (f"under the attacks that do not know the filter, it raised the ensemble's misclassification in "
            f"{len(worse)} of {cells} (attack, eps) cells, "
            f"significantly in {len(significant)}" + (f": {'; '.join(significant)}" if significant else "") + cost)
    return _line("the source document reports no clean accuracy.", here + ".",
                 "the filter has a cost on these models: against some attacks that do not know it, it adds more "
                 "errors than it removes." if significant else "no significant harm from the filter here.")


def targeted(t: Tables) -> str | None:
    top = max(t.epsilons)
    if t.hits.empty or f"eps {top}" not in t.hits.columns:
        return None
    column = t.hits[f"eps {top}"]
    cells = [f"{d} {column[d]}" for d in ("lite0", "median_lite0", "lite2") if d in column.index]
    return _line("no targeted attack is studied.", f"the targeted attack (made on Lite0) reaches its target class at eps "
                 f"{top} on: {'; '.join(cells)} (%).", "not a finding of the source; shown for the competition's "
                 "targeted track.")


FINDINGS: list[Callable[[Tables], str | None]] = [white_box, filter_alone, held_out, table_3, lower_eps, smooth,
                                                  adaptive, raised, targeted]


def findings(tables: Tables) -> list[str]:
    """Every finding the data has the cells for, in the source document's order, then ours."""
    return [line for finding in FINDINGS if (line := finding(tables))]
