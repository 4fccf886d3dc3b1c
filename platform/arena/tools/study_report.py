"""The real-model study's report: docs/study.md and its plots, from stored per-image results.

The source document (the 2017 competition and its median-filter study) reports the
misclassification of its defenders without (Table 1) and with (Table 2) a 3x3 median
filter, defenders as rows and attackers as columns, at eps 16 on 160 images, and its best
ensemble against its strongest attacker by eps (Table 3). The same views are made here,
beside its numbers, with a 95% interval on every rate and McNemar's exact test on every
with/without-filter pair. Every number in the prose is read from a table above it.
"""

from pathlib import Path

import pandas as pd
from sqlalchemy.orm import Session

from arena.models import Dataset
from arena.results.leaderboards import Leaderboards
from arena.results.plots import epsilon_curves, heatmap
from arena.results.scoring import Standings, load_results
from arena.tools import study_findings
from arena.tools.study_tables import (
    ADAPTIVE,
    FILTER_PAIRS,
    FULL_ATTACK,
    SOURCE_TABLE_3,
    TRANSFER_ATTACK,
    access,
    attack_budgets,
    attack_order,
    defense_order,
    filter_effects,
    named,
    paired,
    rates,
    study_minutes,
    target_hits,
    with_interval,
)

#: The source document's Table 3 as columns beside Arena's.
SOURCE_COLUMNS = pd.DataFrame.from_dict(SOURCE_TABLE_3, orient="index",
                                        columns=["source: without filtering", "source: with filtering"])
#: Cells of the source document's Tables 1 and 2 (without / with filtering, eps 16) that have
#: an analog here, and that analog as (attack, unfiltered defense).
SOURCE_CELLS = [
    ("inception_v3 against a white-box inception_v3 attacker", 100.00, 100.00, ("ifgsm", "lite0")),
    ("held-out inception_v4 against the `*` ensemble attacker", 80.63, 75.63, ("ensemble_ifgsm", "lite2")),
    ("best ensemble (row 12) against `**`, which holds its models", 99.38, 43.13, (FULL_ATTACK, "ensemble")),
]
MARKS = {"white-box": "**{}**", "adaptive": "**{}** ‡", "partial": "*{}*", "": "{}"}


def _markdown(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join([frame.index.name or "", *map(str, frame.columns)]) + " |"
    rule = "|" + "---|" * (len(frame.columns) + 1)
    rows = [f"| {i} | " + " | ".join("" if pd.isna(v) else f"{v:.1f}" if isinstance(v, float) else str(v) for v in row)
            + " |" for i, row in frame.iterrows()]
    return "\n".join([head, rule, *rows])


def _shown(table: pd.DataFrame) -> pd.Series:
    """Each rate as the tables print it, by (defense, attack, epsilon)."""
    return table.set_index(["defense", "attack", "epsilon"])["shown"]


def _matrix(shown: pd.Series, epsilon: int, defenses: list[str], attacks: list[str]) -> pd.DataFrame:
    """Defenders as rows and attackers as columns, as the source document's tables, each
    cell marked by what the attacker knows of the defender."""
    frame = pd.DataFrame({a: [MARKS[access(a, d)].format(shown[(d, a, epsilon)]) if (d, a, epsilon) in shown.index
                              else "" for d in defenses] for a in attacks}, index=defenses)
    frame.index.name = "defender \\ attacker"
    return frame


def _curve(table: pd.DataFrame, attack: str, defense: str, value: str = "rate") -> pd.Series:
    chosen = table[(table["attack"] == attack) & (table["defense"] == defense)]
    return chosen.set_index("epsilon")[value].sort_index()


def _band(table: pd.DataFrame, attack: str, defense: str) -> pd.DataFrame:
    return pd.DataFrame({"low": _curve(table, attack, defense, "low"), "high": _curve(table, attack, defense, "high")})


def _clean(boards: Leaderboards) -> pd.DataFrame:
    defense = boards.defense.set_index("submission")
    shown = {d: with_interval(*(100 * defense.loc[d, f"clean_accuracy{part}"] for part in ("", "_low", "_high")))
             for d in defense.index}
    frame = pd.Series(shown).reindex(defense_order(list(shown))).rename("clean top-1 (%)").to_frame()
    frame.index.name = "defense"
    return frame


def _source_cells(frame: pd.DataFrame, top: int) -> pd.DataFrame:
    rows = []
    for cell, without, with_, (attack, defense) in SOURCE_CELLS:
        change = paired(frame, top, (attack, defense), (attack, FILTER_PAIRS[defense]))
        rows.append({"source document's cell": cell, "source: without": f"{without:.2f}", "source: with": f"{with_:.2f}",
                     "Arena's analog": f"{defense} against {attack}",
                     "Arena: without": f"{change.first:.1f}" if change else "",
                     "Arena: with": f"{change.second:.1f}" if change else "",
                     "change (McNemar p)": change.shown() if change else ""})
    return pd.DataFrame(rows).set_index("source document's cell")


def _table3(frame: pd.DataFrame, shown: pd.Series, epsilons: list[int]) -> pd.DataFrame:
    rows = {}
    for e in epsilons:
        change = paired(frame, e, (FULL_ATTACK, "ensemble"), (FULL_ATTACK, "median_ensemble"))
        rows[e] = {
            "without filtering": shown.get(("ensemble", FULL_ATTACK, e), ""),
            "with filtering": shown.get(("median_ensemble", FULL_ATTACK, e), ""),
            "change (McNemar p)": change.shown() if change else "",
            **{column: f"{SOURCE_COLUMNS.loc[e, column]:.1f}" if e in SOURCE_COLUMNS.index else ""
               for column in SOURCE_COLUMNS.columns},
        }
    result = pd.DataFrame.from_dict(rows, orient="index")
    result.index.name = "epsilon"
    return result


def _adaptive(shown: pd.Series, defenses: list[str], epsilons: list[int]) -> pd.DataFrame:
    """Each defense against the non-adaptive attacker that holds every model and the two that
    also attack through the filter, at the smallest and largest eps."""
    attacks = [a for a in [FULL_ATTACK, *ADAPTIVE] if a in set(shown.index.get_level_values("attack"))]
    columns = {f"{a}, eps {e}": [shown.get((d, a, e), "") for d in defenses]
               for e in (min(epsilons), max(epsilons)) for a in attacks}
    frame = pd.DataFrame(columns, index=defenses)
    frame.index.name = "defense"
    return frame


def _transfer(frame: pd.DataFrame, shown: pd.Series, epsilons: list[int]) -> pd.DataFrame:
    """The transfer attacker (Lite2 held out) against every model, unfiltered and filtered side by side."""
    rows = {}
    for plain, filtered in FILTER_PAIRS.items():
        row = {}
        for e in epsilons:
            change = paired(frame, e, (TRANSFER_ATTACK, plain), (TRANSFER_ATTACK, filtered))
            row[f"eps {e} without"] = shown.get((plain, TRANSFER_ATTACK, e), "")
            row[f"eps {e} with"] = shown.get((filtered, TRANSFER_ATTACK, e), "")
            row[f"eps {e} change (p)"] = change.shown() if change else ""
        rows[plain] = row
    result = pd.DataFrame.from_dict(rows, orient="index")
    result.index.name = "model"
    return result


def _robustness(boards: Leaderboards, epsilons: list[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each defense's worst case (%) per epsilon and each attack's unique contribution, with intervals."""
    robust = boards.robust_accuracy.set_index("submission")
    worst = pd.DataFrame({f"eps {e}": [with_interval(*(100 * robust.loc[d, f"worst_case_eps={e}{part}"]
                                                       for part in ("", "_low", "_high"))) for d in robust.index]
                          for e in epsilons}, index=robust.index)
    worst.index.name = "defense"
    unique = boards.unique_contributions.set_index("submission")
    contributions = pd.DataFrame({f"eps {e}": [f"{unique.loc[a, f'unique_eps={e}']} ({unique.loc[a, f'unique_eps={e}_low']}–"
                                               f"{unique.loc[a, f'unique_eps={e}_high']})" for a in unique.index]
                                  for e in epsilons}, index=unique.index)
    contributions.index.name = "attack"
    return (worst.reindex(defense_order(list(worst.index))),
            contributions.reindex(attack_order(list(contributions.index))))


def _plots(table: pd.DataFrame, figures: Path, defenses: list[str], attacks: list[str], top: int, photos: int) -> list[Path]:
    everything = table[table["epsilon"] == top].pivot(index="attack", columns="defense", values="rate")
    everything = everything.reindex(index=attacks, columns=defenses)
    bands = {f"Arena: {label}": _band(table, FULL_ATTACK, d)
             for label, d in (("without filtering", "ensemble"), ("with filtering", "median_ensemble"))}
    return [
        heatmap(everything, figures / f"matrix_eps{top}.png", f"Misclassified (%) at eps={top}, {photos} photos"),
        epsilon_curves(
            {"Arena: without filtering": _curve(table, FULL_ATTACK, "ensemble"),
             "Arena: with filtering": _curve(table, FULL_ATTACK, "median_ensemble"),
             **{f"Arena: {a} (adaptive) with filtering": _curve(table, a, "median_ensemble") for a in ADAPTIVE},
             "source: without filtering": SOURCE_COLUMNS["source: without filtering"],
             "source: with filtering": SOURCE_COLUMNS["source: with filtering"]},
            figures / "table3.png",
            f"{FULL_ATTACK} against the ensemble (bands: 95% intervals)",
            styles={"source: without filtering": ":s", "source: with filtering": ":s",
                    **{f"Arena: {a} (adaptive) with filtering": "--^" for a in ADAPTIVE}},
            bands=bands,
        ),
        epsilon_curves(
            {f"{a} vs ensemble": _curve(table, a, "ensemble") for a in attacks}
            | {f"{a} vs median+ensemble": _curve(table, a, "median_ensemble") for a in attacks},
            figures / "ensemble_vs_eps.png",
            "Ensemble of Lite0/1/2: solid unfiltered, dashed 3x3 median",
            styles={f"{a} vs median+ensemble": "--o" for a in attacks},
        ),
    ]


def write_report(session: Session, dataset: Dataset, path: Path) -> list[Path]:
    standings = Standings.compute(session, dataset)
    boards = Leaderboards.load(session, dataset, standings)
    frame = named(load_results(session, dataset), standings.names)  # the study is small: its rows fit in memory
    table = rates(frame)
    shown = _shown(table)
    epsilons = standings.epsilons
    top, photos = max(epsilons), frame["image_id"].nunique()
    defenses, attacks = defense_order(list(set(frame["defense"]))), attack_order(list(set(frame["attack"])))
    unfiltered = [d for d in defenses if not d.startswith("median_")]
    filtered = [d for d in defenses if d.startswith("median_")]
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = path.parent / "study"
    figures.mkdir(exist_ok=True)
    written = _plots(table, figures, defenses, attacks, top, photos)

    tables = study_findings.Tables(
        frame=frame, rates=table, epsilons=epsilons, clean=_clean(boards),
        budgets=attack_budgets(session, dataset, standings.names), hits=target_hits(frame),
    )
    worst, contributions = _robustness(boards, epsilons)
    sections = [
        _intro(photos, len(attacks), len(defenses), epsilons, study_minutes(session, dataset)),
        ("Attacks and what they spent", _markdown(tables.budgets), _BUDGET_TEXT),
        ("Clean accuracy", _markdown(tables.clean), _CLEAN_TEXT),
        (f"Table 1 analog: misclassified (%) without filtering, eps = {top}",
         _markdown(_matrix(shown, top, unfiltered, attacks)), _LEGEND),
        (f"Table 2 analog: misclassified (%) with a 3x3 median filter, eps = {top}",
         _markdown(_matrix(shown, top, filtered, attacks)), f"![error matrix at eps {top}](study/matrix_eps{top}.png)"),
        (f"The filter's effect, eps = {top}: Table 2 minus Table 1 (points), McNemar's exact p",
         _markdown(filter_effects(frame, top, attacks)), _EFFECT_TEXT),
        ("Beside the source document's Tables 1 and 2 (eps 16)", _markdown(_source_cells(frame, top)), _SOURCE_TEXT),
        (f"Table 3 analog: {FULL_ATTACK} against the Lite0/1/2 ensemble, by eps",
         _markdown(_table3(frame, shown, epsilons)), "![table 3](study/table3.png)"),
        ("Adaptive attacks: through the filter", _markdown(_adaptive(shown, defenses, epsilons)), _ADAPTIVE_TEXT),
        ("Transfer to the held-out model, filtered and not", _markdown(_transfer(frame, shown, epsilons)),
         "![ensemble against every attack](study/ensemble_vs_eps.png)"),
        ("Targeted attack: target class reached (%)", _markdown(tables.hits) if not tables.hits.empty else "(none)", ""),
        ("Worst case over the attacks", _markdown(worst) + "\n\n" + _markdown(contributions), _WORST_TEXT),
        ("What holds here of the source document's findings, and what does not",
         "\n".join(study_findings.findings(tables)), _LIMITS_TEXT.format(photos=photos)),
        *[(f"Every rate at eps {e}", _markdown(_matrix(shown, e, defenses, attacks)) + "\n\n"
           + _markdown(filter_effects(frame, e, attacks)), "") for e in epsilons],
    ]
    path.write_text(_render(sections))
    return [path, *written]


def _render(sections: list) -> str:
    lines = []
    for section in sections:
        if isinstance(section, str):
            lines += [section, ""]
            continue
        title, body, after = section
        lines += [f"## {title}", "", body, ""] + ([after, ""] if after else [])
    return "\n".join(lines)


def _intro(photos: int, attacks: int, defenses: int, epsilons: list[int], minutes: float) -> str:
    return "\n".join([
        "# The median-filter study, on Arena",
        "",
        "Generated by `make demo-real` (`arena study --images N`) from the stored per-image results:",
        f"{photos} real ImageNet photos (spread over the 1000 classes of `imagenet-sample-1000`),",
        f"centre-cropped to 299x299; {attacks} attacks at eps {', '.join(map(str, epsilons))} and {defenses} defenses,",
        "all sample submissions in `submissions/real/` running in `arena/torch:bookworm` (CPU PyTorch,",
        "EfficientNet-Lite0/1/2 ImageNet weights from PyPI), under the tournament's sandbox and time",
        "limits. Rates are misclassified photos in %, clean mistakes included; in brackets, each",
        "rate's 95% bootstrap interval over the photos (docs/scoring.md). A paired comparison gives",
        "the change in points and McNemar's exact p over the same photos: below 0.05, the photos",
        "tell the two apart.",
        "",
        f"The run took {minutes:.0f} minutes from the dataset's import to the last answer (intake with",
        "its dry runs, then the tournament, two containers at a time on 2 CPU cores).",
        "",
        "The source document is the 2017 competition's median-filter study (`../shared/paper/`): its",
        "defenders were Inception models, some adversarially trained, its attack a modified CW L2",
        "at eps 16 on 160 images. No adversarially trained ImageNet weights can be installed",
        "offline here (no PyPI package ships them), so every model below is normally trained;",
        "`arena study --defense FOLDER` enters any other defense submission folder, one that loads",
        "such weights from disk for instance, into the same tables.",
    ])


_BUDGET_TEXT = ("Container seconds per 100 photos on one CPU, model loading included, averaged over every run the "
                "attack made in this study; the limit is the round's 500 s per 100 photos.")
_CLEAN_TEXT = ("Lite0's published ImageNet top-1 is about 75%; these photos are one canonical example per class, "
               "easier than the validation set. The source document reports no clean accuracy.")
_LEGEND = ("**Bold**: the attacker holds every model of the defender (white-box); *italic*: some of them; "
           "‡: it also attacks through the filter (adaptive); plain: a transfer attack.")
_EFFECT_TEXT = ("Positive: the filter raised the misclassification; negative: it lowered it. "
                "p is McNemar's exact test over the photos on which the two defenses disagree.")
_SOURCE_TEXT = ("Arena's models are not adversarially trained, its attacks are L-infinity (MI-FGSM) rather than "
                "a modified CW L2, and its photos are other photos: a cell is an analog, not a replication.")
_ADAPTIVE_TEXT = (f"{FULL_ATTACK} attacks the models and ignores the filter; bpda_ifgsm runs the filter in its "
                  "forward pass and passes the gradient straight through it (BPDA); eot_ifgsm also averages "
                  "each step over random one-pixel shifts (EOT). All three hold every model and spend ten "
                  "gradient computations per photo.")
_WORST_TEXT = ("Robust accuracy (%): the photos a defense labels right clean and on the output of every attack at "
               "that eps, the worst case the sums above hide (docs/scoring.md). Then, per attack, the "
               "(defense, photo) pairs at each eps that only this attack broke.")
_LIMITS_TEXT = ("These are {photos} photos: where two intervals overlap much and McNemar's p is large, the photos "
                "cannot tell the two apart.")
