"""The ``arena`` command: help everywhere, and bad input gives one clear message and exit 1."""

import zipfile

import pandas as pd
import pytest
from typer.testing import CliRunner

from arena.cli import app
from arena.config import get_settings

runner = CliRunner()


@pytest.fixture
def fresh_dir(tmp_path, monkeypatch):
    """A data directory nothing has run in yet: no database."""
    monkeypatch.setenv("ARENA_DATA_DIR", str(tmp_path / "arena"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def data_dir(fresh_dir):
    """A data directory after the README's set-up step, `arena db upgrade`."""
    assert arena("db", "upgrade").exit_code == 0
    return fresh_dir


def arena(*args: str):
    return runner.invoke(app, list(args))


@pytest.mark.parametrize(
    "command",
    [[], ["db"], ["dataset"], ["dataset", "import"], ["dataset", "synth"], ["submit"], ["run"], ["rerun"],
     ["leaderboard"], ["robust"], ["matrix"], ["export"], ["images", "build"], ["submissions", "list"], ["demo"], ["web"],
     ["teams", "token"], ["disqualify"], ["round"], ["round", "create"], ["round", "set"], ["round", "carry"],
     ["round", "publish"], ["round", "choose"], ["round", "bundle"], ["round", "replay"], ["teams", "member"],
     ["baseline"], ["submissions", "images"], ["submissions", "repin"], ["backup"], ["restore"], ["hosts", "list"],
     ["hosts", "drain"]],
)
def test_every_command_has_help(command):
    result = arena(*command, "--help")
    assert result.exit_code == 0 and "Usage" in result.output and len(result.output) > 200


def test_import_of_a_missing_folder_names_it(data_dir):
    result = arena("dataset", "import", str(data_dir / "nowhere"))
    assert result.exit_code == 1 and "expected one .csv file, found 0" in result.output


def test_import_lists_bad_rows(data_dir):
    folder = data_dir / "bad"
    folder.mkdir()
    (folder / "dev.csv").write_text("ImageId,TrueLabel,TargetClass\na,5,6\nb,2000,6\n")
    result = arena("dataset", "import", str(folder))
    assert result.exit_code == 1
    assert "row 2 (a): image file a.png is missing" in result.output
    assert "row 3 (b): TrueLabel '2000' is outside 1..1000" in result.output
    assert "Traceback" not in result.output


def test_synth_then_list(data_dir):
    assert arena("dataset", "synth", "150", "--name", "s").exit_code == 0
    listing = arena("dataset", "list")
    assert "s" in listing.output and "150" in listing.output
    again = arena("dataset", "synth", "5", "--name", "s")
    assert again.exit_code == 1 and "already exists" in again.output


def test_submit_of_a_missing_archive(data_dir):
    arena("dataset", "synth", "10")
    result = arena("submit", str(data_dir / "nothing.zip"), "--team", "t")
    assert result.exit_code == 1 and "does not exist" in result.output


def test_commands_need_to_know_the_dataset(data_dir):
    run = arena("run")
    assert run.exit_code == 1 and "say which dataset with --dataset (datasets: none imported yet)" in run.output
    arena("dataset", "synth", "10", "--name", "one")
    board = arena("leaderboard", "--dataset", "two")
    assert board.exit_code == 1 and "no dataset named 'two' (known: one)" in board.output
    assert arena("rerun", "--submission", "ghost").output.count("no submission named 'ghost'") == 1
    bogus = arena("matrix", "--value", "bogus")
    said = " ".join(bogus.output.replace("│", " ").split())  # rich draws the message in a box
    assert bogus.exit_code == 2 and "'bogus' is not one of 'error', 'correct', 'hit'" in said


def test_export_writes_the_2017_files(data_dir):
    arena("dataset", "synth", "10")
    result = arena("export", str(data_dir / "out"))
    assert result.exit_code == 0, result.output
    names = {p.name for p in (data_dir / "out").iterdir()}
    assert {"accuracy_matrix.csv", "error_matrix.csv", "hit_target_class_matrix.csv", "defense_results.csv",
            "attack_results.csv", "targeted_attack_results.csv", "classifications.parquet", "submissions.csv"} <= names
    assert pd.read_parquet(data_dir / "out" / "classifications.parquet").empty


@pytest.mark.docker
@pytest.mark.usefixtures("engine")
def test_a_small_tournament_through_the_command_line(data_dir, monkeypatch):
    from arena.intake.archive import pack
    from conftest import SAMPLES

    monkeypatch.setenv("ARENA_EPSILONS", "4,16")
    get_settings.cache_clear()
    assert arena("dataset", "synth", "20").exit_code == 0
    for sample in ("random_noise", "decoder"):
        result = arena("submit", str(pack(SAMPLES / sample, data_dir / f"{sample}.zip")), "--team", "cli")
        assert result.exit_code == 0 and "accepted" in result.output, result.output
    run = arena("run")
    assert run.exit_code == 0 and "ran 2 attack jobs and 3 defense jobs" in run.output
    board = arena("leaderboard")
    assert board.exit_code == 0 and "random_noise" in board.output and "Error matrix" in board.output
    rerun = arena("rerun", "--submission", "decoder")
    assert "ran 0 attack jobs and 3 defense jobs" in rerun.output


def test_the_study_says_where_the_photos_should_be(data_dir):
    result = arena("study", "--photos", str(data_dir / "no-photos"), "--images", "10")
    assert result.exit_code == 1
    assert "needs the ImageNet sample photos" in result.output and "--photos" in result.output


def test_the_study_checks_its_extra_defenses_before_building_anything(data_dir, tmp_path):
    missing = arena("study", "--defense", str(tmp_path / "nothing"))
    assert missing.exit_code == 1 and "not a submission folder" in missing.output
    attack = tmp_path / "attack"
    attack.mkdir()
    (attack / "metadata.json").write_text('{"type": "attack", "container": "x", "entry_point": "run.sh"}')
    no_entry = arena("study", "--defense", str(attack))  # read as the intake reads a submission
    assert no_entry.exit_code == 1 and "entry_point 'run.sh' is not a file" in no_entry.output
    (attack / "run.sh").write_text("#!/bin/sh\n")
    wrong = arena("study", "--defense", str(attack))
    assert wrong.exit_code == 1 and "type 'attack', not 'defense'" in wrong.output


def test_unknown_recipes_and_datasets_are_named(data_dir):
    images = arena("images", "build", "nosuch")
    assert images.exit_code == 1 and "no base-image recipe named nosuch" in images.output
    arena("dataset", "synth", "10", "--name", "one")
    export = arena("export", str(data_dir / "out"), "--dataset", "other")
    assert export.exit_code == 1 and "no dataset named 'other' (known: one)" in export.output
    assert not (data_dir / "out").exists()


def test_the_worst_case_over_chosen_attacks_names_a_wrong_one(data_dir):
    from arena import db
    from arena.models import SubmissionKind
    from factories import add_submission

    arena("dataset", "synth", "10")
    with db.transaction(get_settings()) as session:
        add_submission(session, "fgsm", SubmissionKind.ATTACK)
        add_submission(session, "lite0", SubmissionKind.DEFENSE)
    assert "no submission named 'ghost'" in arena("robust", "--attack", "ghost").output
    defense = arena("robust", "--attack", "lite0")
    assert defense.exit_code == 1 and "lite0 is not an accepted attack (defense, accepted)" in defense.output
    chosen = arena("robust", "--attack", "fgsm")
    assert chosen.exit_code == 0 and "Worst-case robust accuracy over fgsm" in chosen.output and "lite0" in chosen.output


def test_a_worker_needs_a_broker(data_dir):
    result = arena("worker")
    assert result.exit_code == 1 and "set ARENA_BROKER_URL" in result.output


def test_team_tokens_and_disqualification(data_dir):
    from arena import db
    from arena.admin.teams import team_for_token

    issued = arena("teams", "token", "blue")
    assert issued.exit_code == 0
    token = issued.output.split(":")[-1].strip()
    with db.transaction(get_settings()) as session:
        assert team_for_token(session, token).name == "blue"
    assert "1 to 200 characters" in arena("teams", "token", " ").output
    missing = arena("disqualify", "ghost", "--reason", "cheating")
    assert missing.exit_code == 1 and "no submission named 'ghost'" in missing.output


def test_only_db_upgrade_changes_the_schema(fresh_dir, monkeypatch):
    """Reads never migrate: before `arena db upgrade` every command that needs the database
    says to run it (exit 1, no traceback) and leaves no table behind."""
    monkeypatch.setenv("ARENA_DATA_DIR", str(fresh_dir / "elsewhere"))
    get_settings.cache_clear()
    for command in (["dataset", "synth", "10"], ["run"], ["leaderboard"], ["submissions", "list"], ["teams", "token", "b"]):
        result = arena(*command)
        assert result.exit_code == 1 and "run `arena db upgrade`" in result.output, (command, result.output)
        assert "Traceback" not in result.output
    from sqlalchemy import inspect

    from arena import db

    assert inspect(db.get_engine(get_settings().resolved_database_url)).get_table_names() == []
    assert arena("db", "upgrade").exit_code == 0
    assert arena("dataset", "synth", "10").exit_code == 0


def test_rounds_teams_and_baselines_through_the_command_line(data_dir):
    """Organizers run a competition from the command line: a dataset opens its round, a second
    round is made on other images, its window, quota and visibility set; entries carried,
    a counting one chosen, a baseline marked, members added; mistakes named."""
    from arena import db
    from arena.competition import entries, rounds
    from arena.models import SubmissionKind
    from factories import add_submission

    assert "round 'dev' open for uploads, epsilons [2, 4, 8, 16]" in arena("dataset", "synth", "4", "--name", "dev").output
    settings = get_settings()
    with db.transaction(settings) as session:
        a = add_submission(session, "A", SubmissionKind.ATTACK, owner="red")
        d1 = add_submission(session, "D1", SubmissionKind.DEFENSE, owner="red")
        add_submission(session, "D2", SubmissionKind.DEFENSE, owner="red")
        ids = {"A": a.id, "D1": d1.id}
    arena("dataset", "synth", "4", "--name", "final-images", "--seed", "3", "--round", "")
    created = arena("round", "create", "final", "--dataset", "final-images", "--eps", "8,16", "--opens", "2030-01-01",
                    "--hidden", "--total-quota", "2")
    assert created.exit_code == 0 and "epsilons [8, 16], not open yet" in created.output
    assert arena("round", "create", "again", "--dataset", "final-images").output.count("already belongs to a round") == 1
    assert "--eps takes integers" in arena("round", "create", "x", "--dataset", "dev", "--eps", "a,b").output
    assert arena("round", "choose", "dev", "D1").exit_code == 0
    carried = arena("round", "carry", "final", "--counting-from", "dev")
    assert "carried 2 submissions into 'final': A, D1" in carried.output
    assert arena("baseline", "A").exit_code == 0
    assert arena("teams", "member", "red", "Ada", "--contact", "ada@example.org").exit_code == 0
    assert "Ada <ada@example.org>" in arena("teams", "list").output
    with db.transaction(settings) as session:
        final = rounds.find(session, "final")
        assert entries.accepted(session, final.dataset_id) == [ids["A"], ids["D1"]]
        assert final.total_quota == 2 and final.visibility.value == "hidden"
    listing = arena("round", "list").output
    assert "not open yet" in listing and "hidden" in listing
    assert "round 'dev' is closed to uploads" in arena("round", "close", "dev").output
    assert arena("round", "close", "dev").output.count("already closed") == 1
    unfinished = arena("round", "publish", "final")
    assert unfinished.exit_code == 1 and "jobs not done: run them first" in unfinished.output
    assert arena("round", "bundle", "final", str(data_dir / "final.zip")).exit_code == 0
    assert "manifest.json" in zipfile.ZipFile(data_dir / "final.zip").namelist()
    shortcut = arena("round", "set", "final", "--visibility", "published")
    assert shortcut.exit_code == 1 and "publish a round with `arena round publish`" in shortcut.output


# --- the same actions as the web (arena/actions.py) -----------------------------------------


def test_submit_is_refused_while_organizers_have_closed_uploads(data_dir):
    """`arena submit` ignored the tournament's uploads switch, which the web honoured."""
    from arena.admin import tournament
    from arena.db import transaction
    from arena.intake.archive import pack
    from arena.models import Submission
    from conftest import SAMPLES

    assert arena("dataset", "synth", "4").exit_code == 0
    with transaction(get_settings()) as session:
        tournament.update(session, uploads_open=False)
    result = arena("submit", str(pack(SAMPLES / "noop", data_dir / "noop.zip")), "--team", "cli")
    assert result.exit_code == 1 and "uploads are closed for this tournament" in result.output
    with transaction(get_settings()) as session:
        assert session.query(Submission).count() == 0


def test_rerun_is_refused_while_another_runner_holds_a_job(data_dir):
    """`arena rerun` forgot the results while a worker or the web's runner could be storing
    them (the web refused, but only for its own runs)."""
    from datetime import timedelta

    from arena.db import transaction
    from arena.models import AttackJob, Batch, JobStatus, SubmissionKind, utcnow
    from factories import add_submission

    assert arena("dataset", "synth", "4").exit_code == 0
    with transaction(get_settings()) as session:
        attack = add_submission(session, "held-attack", SubmissionKind.ATTACK)
        session.add(AttackJob(submission=attack, batch=session.query(Batch).first(), epsilon=16,
                              status=JobStatus.RUNNING, attempt=1, lease_expires_at=utcnow() + timedelta(minutes=5)))
    result = arena("rerun", "--submission", "held-attack")
    assert result.exit_code == 1 and "a run is under way; rerun when it has finished" in result.output
    with transaction(get_settings()) as session:
        assert session.query(AttackJob).one().status is JobStatus.RUNNING  # nothing forgotten
