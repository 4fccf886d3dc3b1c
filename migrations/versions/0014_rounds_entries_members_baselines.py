"""rounds, their entries, team members, baselines and the competition's pages

A tournament becomes a competition in rounds: each round owns a dataset, its epsilons,
time limit, upload window, quotas and leaderboard visibility; submissions take part in a
round through an entry. An existing database becomes one round per dataset (named after
it), at the epsilons its attack jobs were run at (the 2017 four where none ran yet) and
the default 5 s per image, with every submission entered, so every table reads as before.
The tournament row gains the organizers' overview and rules (Markdown) and whether teams
may register themselves.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-25 17:40:00
"""

import json

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

DEFAULT_EPSILONS = [2, 4, 8, 16]
DEFAULT_SECONDS_PER_IMAGE = 5.0


def upgrade() -> None:
    op.create_table(
        "team_members",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("team_id", sa.Integer(), sa.ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("contact", sa.String(200), nullable=True),
    )
    op.create_index("ix_team_members_team_id", "team_members", ["team_id"])
    op.create_table(
        "rounds",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("dataset_id", sa.Integer(), sa.ForeignKey("datasets.id"), nullable=False, unique=True),
        sa.Column("epsilons", sa.JSON(), nullable=False),
        sa.Column("seconds_per_image", sa.Float(), nullable=False),
        sa.Column("opens_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("visibility", sa.Enum("live", "hidden", "published", name="visibility", native_enum=False, length=20),
                  nullable=False),
        sa.Column("daily_quota", sa.Integer(), nullable=True),
        sa.Column("total_quota", sa.Integer(), nullable=True),
        sa.Column("rank_baselines", sa.Boolean(), nullable=False),
        sa.Column("data_public", sa.Boolean(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "round_entries",
        sa.Column("round_id", sa.Integer(), sa.ForeignKey("rounds.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("submission_id", sa.Integer(), sa.ForeignKey("submissions.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("carried", sa.Boolean(), nullable=False),
        sa.Column("chosen", sa.Boolean(), nullable=False),
    )
    with op.batch_alter_table("submissions") as batch_op:
        batch_op.add_column(sa.Column("baseline", sa.Boolean(), nullable=False, server_default=sa.text("false")))
    with op.batch_alter_table("tournament") as batch_op:
        batch_op.add_column(sa.Column("overview", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("rules", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("self_registration", sa.Boolean(), nullable=False, server_default=sa.text("false")))
    _one_round_per_dataset(op.get_bind())


def _one_round_per_dataset(bind) -> None:
    public = bind.execute(sa.text("SELECT leaderboards_public FROM tournament")).scalar()
    visibility = "live" if public is None or public else "hidden"
    submissions = bind.execute(sa.text("SELECT id, created_at FROM submissions")).all()
    for dataset_id, name, created_at in bind.execute(sa.text("SELECT id, name, created_at FROM datasets ORDER BY id")).all():
        epsilons = sorted(bind.execute(sa.text(
            "SELECT DISTINCT a.epsilon FROM attack_jobs a JOIN batches b ON a.batch_id = b.id WHERE b.dataset_id = :d"
        ), {"d": dataset_id}).scalars()) or DEFAULT_EPSILONS
        round_id = bind.execute(sa.text(
            "INSERT INTO rounds (name, dataset_id, epsilons, seconds_per_image, visibility, rank_baselines, data_public, "
            "created_at) VALUES (:name, :d, :eps, :seconds, :visibility, false, false, :created) RETURNING id"
        ), {"name": name, "d": dataset_id, "eps": json.dumps(epsilons), "seconds": DEFAULT_SECONDS_PER_IMAGE,
            "visibility": visibility, "created": created_at}).scalar()
        if submissions:
            bind.execute(sa.text(
                "INSERT INTO round_entries (round_id, submission_id, entered_at, carried, chosen) "
                "VALUES (:r, :s, :at, false, false)"
            ), [{"r": round_id, "s": s, "at": at} for s, at in submissions])


def downgrade() -> None:
    with op.batch_alter_table("tournament") as batch_op:
        for column in ("self_registration", "rules", "overview"):
            batch_op.drop_column(column)
    with op.batch_alter_table("submissions") as batch_op:
        batch_op.drop_column("baseline")
    op.drop_table("round_entries")
    op.drop_table("rounds")
    op.drop_index("ix_team_members_team_id", "team_members")
    op.drop_table("team_members")
