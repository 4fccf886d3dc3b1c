"""The migrations, on SQLite and on a real PostgreSQL: the head revision builds exactly the
schema of the models (what ``alembic check`` says), and every revision downgrades and
upgrades again, so a release can be rolled back."""

import json

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from arena import db
from arena.config import Settings
from arena.models import Base
from servers import new_database, postgres_server


@pytest.fixture(scope="module")
def postgres():
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path) -> Settings:
    if request.param == "sqlite":
        return Settings(data_dir=tmp_path / "arena")
    return Settings(data_dir=tmp_path / "arena", database_url=new_database(request.getfixturevalue("postgres")))


def differences(settings: Settings) -> list:
    with db.get_engine(settings.resolved_database_url).connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def tables(settings: Settings) -> set[str]:
    return set(sa.inspect(db.get_engine(settings.resolved_database_url)).get_table_names())


def test_head_is_the_models_and_every_revision_rolls_back(settings):
    db.upgrade(settings)
    assert differences(settings) == []
    command.downgrade(db.alembic_config(settings), "base")
    assert tables(settings) <= {"alembic_version"}
    db.upgrade(settings)
    assert differences(settings) == []


def _classifications(settings: Settings) -> dict:
    inspector = sa.inspect(db.get_engine(settings.resolved_database_url))
    return {
        "key": inspector.get_pk_constraint("classifications")["constrained_columns"],
        "foreign keys": [(key["constrained_columns"], key["referred_table"], key["options"].get("ondelete"))
                         for key in inspector.get_foreign_keys("classifications")],
        "indexes": sorted(index["name"] for index in inspector.get_indexes("classifications")),
    }


def test_classifications_are_keyed_by_job_and_image_alone(settings):
    """Migration 0013: every index and key on the biggest table is work per inserted row; the
    primary key (defense job, image) is the one left, and 0010's come back on a downgrade."""
    db.upgrade(settings)
    assert _classifications(settings) == {"key": ["defense_job_id", "image_id"], "foreign keys": [], "indexes": []}
    if settings.resolved_database_url.startswith("sqlite"):  # the rows live in the key's b-tree
        with db.get_engine(settings.resolved_database_url).connect() as connection:
            assert "WITHOUT ROWID" in connection.scalar(sa.text("SELECT sql FROM sqlite_master WHERE name = 'classifications'"))
    command.downgrade(db.alembic_config(settings), "0010")
    assert _classifications(settings) == {
        "key": ["id"], "foreign keys": [(["defense_job_id"], "defense_jobs", "CASCADE")],
        "indexes": ["ix_classifications_defense_job_id", "uq_classification_adversarial", "uq_classification_clean"]}
    command.downgrade(db.alembic_config(settings), "0005")
    assert len(_classifications(settings)["foreign keys"]) == 4


SKELETON = [  # a dataset of two images, one defense, its job over the clean batch
    "INSERT INTO datasets (id, name, created_at) VALUES (1, 'd', CURRENT_TIMESTAMP)",
    "INSERT INTO batches (id, dataset_id, \"index\") VALUES (1, 1, 0)",
    "INSERT INTO images (id, dataset_id, batch_id, name, true_label, target_class, sha256) "
    "VALUES (1, 1, 1, 'a', 5, 6, 'x'), (2, 1, 1, 'b', 7, 8, 'y')",
    "INSERT INTO teams (id, name, created_at) VALUES (1, 't', CURRENT_TIMESTAMP)",
    "INSERT INTO submissions (id, team_id, name, kind, sha256, metadata, status, created_at) "
    "VALUES (1, 1, 'D', 'defense', 'z', '{}', 'accepted', CURRENT_TIMESTAMP)",
    "INSERT INTO defense_jobs (id, submission_id, batch_id, status, attempt) VALUES (1, 1, 1, 'done', 1)",
]
ANSWERS = "SELECT defense_job_id, defense_id, image_id, adversarial_image_id, label, problem FROM classifications ORDER BY 1, 3"


def _execute(settings: Settings, *statements: str) -> list:
    with db.get_engine(settings.resolved_database_url).begin() as connection:
        return [connection.execute(sa.text(statement)).all() if statement.startswith("SELECT")
                else connection.execute(sa.text(statement)) for statement in statements][-1]


def test_the_answers_stay_through_a_downgrade_and_an_upgrade(settings):
    db.upgrade(settings, "0010")
    _execute(settings, *SKELETON, "INSERT INTO classifications (defense_job_id, defense_id, image_id, label, problem) "
                                  "VALUES (1, 1, 1, 5, NULL), (1, 1, 2, NULL, 'missing')")
    stored = _execute(settings, ANSWERS)
    db.upgrade(settings)
    assert _execute(settings, ANSWERS) == stored
    _execute(settings, "INSERT INTO classifications (defense_job_id, defense_id, image_id, label) VALUES (9, 1, 1, 3)")
    command.downgrade(db.alembic_config(settings), "0010")  # the answer of no job goes: the key comes back
    assert _execute(settings, ANSWERS) == stored
    assert sorted(row[0] for row in _execute(settings, "SELECT id FROM classifications")) == [1, 2]
    db.upgrade(settings)
    assert _execute(settings, ANSWERS) == stored


def test_the_key_refuses_a_second_answer_to_an_image_of_a_job(settings):
    db.upgrade(settings)
    _execute(settings, *SKELETON, "INSERT INTO classifications (defense_job_id, defense_id, image_id, label) VALUES (1, 1, 1, 5)")
    with pytest.raises(sa.exc.IntegrityError):
        _execute(settings, "INSERT INTO classifications (defense_job_id, defense_id, image_id, label) VALUES (1, 1, 1, 6)")
    assert [row[4] for row in _execute(settings, ANSWERS)] == [5]


def test_an_existing_tournament_becomes_one_round_per_dataset(settings):
    """Migration 0014, with data in it: each dataset becomes a round at the epsilons its
    attacks ran at, every submission is entered, and hidden leaderboards stay hidden."""
    settings.data_dir.mkdir(parents=True)
    command.upgrade(db.alembic_config(settings), "0010")
    engine = db.get_engine(settings.resolved_database_url)
    with engine.begin() as connection:
        run = connection.execute
        run(sa.text("UPDATE tournament SET leaderboards_public = false"))
        run(sa.text("INSERT INTO datasets (id, name, created_at) VALUES (1, 'dev', '2026-01-01'), (2, 'final', '2026-01-02')"))
        run(sa.text("INSERT INTO batches (id, dataset_id, \"index\") VALUES (1, 1, 0), (2, 2, 0)"))
        run(sa.text("INSERT INTO teams (id, name, created_at) VALUES (1, 'a', '2026-01-01')"))
        run(sa.text("INSERT INTO submissions (id, team_id, name, kind, sha256, metadata, status, created_at) VALUES "
                    "(1, 1, 'fgsm', 'attack', 'x', '{}', 'accepted', '2026-01-03'), "
                    "(2, 1, 'guard', 'defense', 'y', '{}', 'accepted', '2026-01-04')"))
        run(sa.text("INSERT INTO attack_jobs (submission_id, batch_id, epsilon, status, attempt) VALUES "
                    "(1, 1, 16, 'done', 1), (1, 1, 4, 'done', 1)"))
    db.upgrade(settings)
    with engine.connect() as connection:
        rounds = connection.execute(sa.text("SELECT name, dataset_id, epsilons, visibility FROM rounds ORDER BY id")).all()
        entries = connection.execute(sa.text("SELECT round_id, submission_id FROM round_entries ORDER BY 1, 2")).all()
        baseline = connection.execute(sa.text("SELECT baseline FROM submissions WHERE id = 1")).scalar()
    parsed = [(name, dataset, json.loads(eps) if isinstance(eps, str) else eps, visibility)
              for name, dataset, eps, visibility in rounds]
    assert parsed == [("dev", 1, [4, 16], "hidden"), ("final", 2, [2, 4, 8, 16], "hidden")]
    assert [entry[1] for entry in entries] == [1, 2, 1, 2]
    assert baseline is False or baseline == 0
    command.downgrade(db.alembic_config(settings), "0010")
    assert "rounds" not in tables(settings)


def test_existing_rounds_keep_the_schedule_the_installation_ran_with(settings, monkeypatch):
    """Migration 0016: the schedule moves from the settings into each round; rounds made before
    get the one ``ARENA_EPS_SCHEDULE`` says where `arena db upgrade` runs."""
    settings.data_dir.mkdir(parents=True)
    command.upgrade(db.alembic_config(settings), "0015")
    engine = db.get_engine(settings.resolved_database_url)
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO datasets (id, name, created_at) VALUES (1, 'final', '2026-01-01')"))
        connection.execute(sa.text("INSERT INTO rounds (id, name, dataset_id, epsilons, seconds_per_image, visibility, "
                                   "rank_baselines, data_public, created_at) "
                                   "VALUES (1, 'final', 1, '[4, 8, 12, 16]', 5.0, 'live', false, false, '2026-01-01')"))
    monkeypatch.setenv("ARENA_EPS_SCHEDULE", "round_robin")
    command.upgrade(db.alembic_config(settings), "0016")
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT eps_schedule FROM rounds")).scalar() == "round_robin"


def test_existing_rounds_get_keys_of_their_own_and_those_with_results_no_replay(settings):
    """Migration 0019: every round gets a random naming key of its own; a round whose results
    were named the old way (the installation's key, database ids) is marked not replayable,
    so that its bundle never offers a key that does not reproduce it."""
    settings.data_dir.mkdir(parents=True)
    command.upgrade(db.alembic_config(settings), "0018")
    _execute(settings, *SKELETON,
             "INSERT INTO datasets (id, name, created_at) VALUES (2, 'fresh', CURRENT_TIMESTAMP)",
             "INSERT INTO rounds (id, name, dataset_id, epsilons, eps_schedule, seconds_per_image, visibility, "
             "rank_baselines, data_public, created_at) VALUES "
             "(1, 'ran', 1, '[4]', 'all', 5.0, 'live', false, false, CURRENT_TIMESTAMP), "
             "(2, 'fresh', 2, '[4]', 'all', 5.0, 'live', false, false, CURRENT_TIMESTAMP)")
    command.upgrade(db.alembic_config(settings), "0019")
    rows = _execute(settings, "SELECT name, naming_key, replayable FROM rounds ORDER BY id")
    assert [(name, bool(replayable)) for name, _key, replayable in rows] == [("ran", False), ("fresh", True)]
    keys = [key for _name, key, _replayable in rows]
    assert all(len(bytes.fromhex(key)) == 32 for key in keys) and keys[0] != keys[1]


def test_query_jobs_get_attempts_of_their_own(settings):
    """Migration 0025: an attempt names exactly one job, now of three kinds; a downgrade drops
    the query jobs' attempts (the revision before has no column for them) and keeps the rest."""
    db.upgrade(settings, "0024")
    _execute(settings, *SKELETON,
             "INSERT INTO submissions (id, team_id, name, kind, sha256, metadata, status, created_at) "
             "VALUES (2, 1, 'Q', 'query_attack', 'q', '{}', 'accepted', CURRENT_TIMESTAMP)",
             "INSERT INTO query_jobs (id, attack_id, defense_id, batch_id, status, attempt, attack_timed_out, problems) "
             "VALUES (1, 2, 1, 1, 'done', 1, false, '[]')",
             "INSERT INTO job_attempts (id, defense_job_id, number, started_at, timed_out) "
             "VALUES (1, 1, 1, CURRENT_TIMESTAMP, false)")
    db.upgrade(settings)
    _execute(settings, "INSERT INTO job_attempts (id, query_job_id, number, started_at, timed_out, served_log_sha256) "
                       "VALUES (2, 1, 1, CURRENT_TIMESTAMP, false, 'ab')")
    for columns, values in (("defense_job_id, query_job_id", "1, 1"), ("query_job_id", "NULL")):  # two jobs, none
        with pytest.raises(sa.exc.IntegrityError):
            _execute(settings, f"INSERT INTO job_attempts (id, {columns}, number, started_at, timed_out) "
                               f"VALUES (3, {values}, 1, CURRENT_TIMESTAMP, false)")
    assert _execute(settings, "SELECT id FROM job_attempts ORDER BY id") == [(1,), (2,)]
    command.downgrade(db.alembic_config(settings), "0024")
    assert _execute(settings, "SELECT id FROM job_attempts ORDER BY id") == [(1,)]
    db.upgrade(settings)
    assert differences(settings) == []
