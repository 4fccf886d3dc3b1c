"""The leaderboards as people read them (`arena leaderboard`, `arena robust`): every name
whole, no line wider than the terminal, headers in words, baselines marked only where they
are one; and as scripts read them (--format csv|json, the export's files): every column, no
single-precision noise."""

import json
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from arena import cli, tables
from arena.config import get_settings
from arena.db import transaction
from arena.execution import pack_run
from arena.models import Submission, SubmissionKind
from arena.results.export import export
from arena.results.scoring import Standings
from conftest import make_settings
from factories import attacked, defense_packs, fake_defenses, synth_dataset

runner = CliRunner()
SUBMISSIONS = [("random_noise_attack_v2", SubmissionKind.ATTACK), ("iterative_gradient_sign", SubmissionKind.ATTACK),
               ("step_to_target_class", SubmissionKind.TARGETED_ATTACK),
               ("smoothed_decoder_defense", SubmissionKind.DEFENSE), ("median_filter_baseline", SubmissionKind.DEFENSE)]
TEAM = "spectral-defenders"
NAMES = [name for name, _ in SUBMISSIONS] + [TEAM]


@pytest.fixture
def tournament(tmp_path, monkeypatch):
    """Two attacks, a targeted attack and two defenses (one a baseline) at four epsilons, every
    defense job run (faked: every answer case the rules name), and the CLI pointed at it."""
    settings = make_settings(tmp_path / "arena", epsilons=[2, 4, 8, 16])
    dataset = synth_dataset(settings, 20, batch_size=10)
    with transaction(settings) as session:
        ids = attacked(session, dataset, settings.epsilons, SUBMISSIONS, owner=TEAM)
        session.get(Submission, ids["median_filter_baseline"]).baseline = True
    fake_defenses(monkeypatch, settings)
    for pack in defense_packs(settings):
        assert pack_run.run_pack(settings, pack).finished
    monkeypatch.setenv("ARENA_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("ARENA_EPSILONS", "2,4,8,16")
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def arena(*args: str) -> str:
    result = runner.invoke(cli.app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_the_leaderboards_fit_100_columns_with_every_name_whole(tournament):
    shown = arena("leaderboard", "--all")
    assert max(map(len, shown.splitlines())) <= 100, shown
    assert all(name in shown for name in NAMES), shown
    assert "…" not in shown and "False" not in shown and "nan" not in shown
    assert re.search(r"median_filter_baseline \*\s", shown) and shown.count(" * ") == 1 and "*: an organizers' baseline" in shown
    header = next(line for line in shown.splitlines() if line.lstrip().startswith("Rank"))
    assert header.split() == ["Rank", "Submission", "Team", "Score", "Normalized", "ε", "2", "ε", "4", "ε", "8", "ε", "16"]
    assert re.search(r"smoothed_decoder_defense\s+spectral-defenders\s+\d+ ±\d+\s+\d+\.\d ±\d+\.\d", shown), shown
    assert "target class" in shown and "Error matrix" in shown


def test_wide_shows_every_figure_with_its_bounds_and_says_what_unique_counts(tournament):
    shown = arena("leaderboard", "--all", "--wide", "--track", "targeted_attack")
    assert "Unique misclassifications" in shown and "it is not a count of target hits" in shown
    assert re.search(r"step_to_target_class\s+\S+\s+\d+ \[\d+, \d+\]", shown), shown
    defenses = arena("leaderboard", "--all", "--wide", "--track", "defense")
    assert all(words in defenses for words in ("Clean %", "Worst case %", "Beats next %")) and "Targeted" not in defenses


def test_scripts_get_every_column_as_csv_and_json(tournament):
    rows = pd.read_csv(pd.io.common.StringIO(arena("leaderboard", "--all", "--format", "csv")))
    assert set(rows["track"]) == {"defense", "attack", "targeted_attack"}
    assert {"score_low", "score_high", "beats_next", "worst_case"} <= set(rows.columns)
    assert rows.set_index("submission").loc["median_filter_baseline", "baseline"] == "yes"
    assert rows["baseline"].isna().sum() == len(rows) - 1
    boards = json.loads(arena("leaderboard", "--all", "--format", "json", "--track", "attack"))
    assert list(boards) == ["attack"] and {r["submission"] for r in boards["attack"]} == {
        "random_noise_attack_v2", "iterative_gradient_sign"}


def test_the_exported_bounds_carry_no_single_precision_noise(tournament, tmp_path):
    with transaction(tournament) as session:
        from arena.data.dataset import find_dataset

        export(session, find_dataset(session, None), tmp_path / "out")
    text = (tmp_path / "out" / "defense_results.csv").read_text()
    assert not re.search(r"\d\.\d{9,}", text.replace("e-", "")), text  # 0.8072, never 0.807200014591217
    assert "False" not in text and ",yes," in text


def test_robust_fits_and_names_its_columns(tournament):
    shown = arena("robust")
    assert max(map(len, shown.splitlines())) <= 100, shown
    assert "Worst case %" in shown and "Unique" in shown and "smoothed_decoder_defense" in shown


def test_the_matrix_turns_when_its_defenses_do_not_fit(tournament):
    with transaction(tournament) as session:
        from arena.data.dataset import find_dataset

        standings = Standings.compute(session, find_dataset(session, None))
    wide = standings.matrix("error").reindex(columns=[f"defense_number_{k:02d}" for k in range(8)], fill_value=0)
    table = tables.matrix(wide, "Error matrix (attack x defense, all eps)", cli.console)
    assert table.columns[0].header == "Defense" and "defense x attack" in str(table.title)


def test_a_name_is_shown_as_typed_never_read_as_markup():
    from rich.console import Console

    from arena import tables

    shown = tables.table("t")
    tables.add_columns(shown, ["Submission", "Score"], [["evil[bold]name[/bold]", "1"]])
    console = Console(width=100, record=True, file=open("/dev/null", "w"))
    console.print(shown)
    assert "evil[bold]name[/bold]" in console.export_text()


def test_no_csv_carries_a_formula_from_a_name(tournament, tmp_path):
    """Names are the teams' own and the exports public: a name a spreadsheet would run as a
    formula is written with a leading ', in the export, the API's files and --format csv."""
    from fastapi.testclient import TestClient

    from arena.data.dataset import find_dataset
    from arena.models import Team
    from arena.web.app import create_app

    with transaction(tournament) as session:
        session.query(Submission).filter_by(name="smoothed_decoder_defense").one().name = "=HYPERLINK(\"http://x\")"
        session.query(Submission).filter_by(name="random_noise_attack_v2").one().name = "+1+2"
        session.query(Team).filter_by(name=TEAM).one().name = "@SUM(A1)"
        export(session, find_dataset(session, None), tmp_path / "out")
    written = {path.name: path.read_text() for path in (tmp_path / "out").glob("*.csv")}
    served = TestClient(create_app(tournament)).get("/api/export/defense_results.csv").text
    printed = arena("leaderboard", "--all", "--format", "csv")
    for text in [*written.values(), served, printed]:
        cells = [cell for line in text.splitlines() for cell in line.split(",")]
        assert not any(cell.startswith(("=", "+", "@", '"=', '"+', '"@')) for cell in cells), text
    assert "'=HYPERLINK" in written["defense_results.csv"] and "'@SUM(A1)" in served and "'+1+2" in printed
    assert "'+1+2" in written["error_matrix.csv"]  # the matrices' index and header too
    assert "'=HYPERLINK" in written["error_matrix.csv"].splitlines()[0]
