"""the query track: served defenses, query jobs and their per-image results

The 2018 Adversarial Vision Challenge's format beside the 2017 batch tracks: a query-track
attack runs against each served defense, Arena carrying and counting every query
(docs/query-track.md). A round says how many queries an attack may make per image, and
which pairs run (all, or the top K of each side) on how many images; a query
job records both containers' outcome, and each image the queries it cost and how the
defense labelled the attack's output, as returned and clipped to each epsilon.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-04 08:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(sa.Column("query_budget", sa.Integer(), server_default="1000", nullable=False))
        batch.add_column(sa.Column("query_top_k", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("query_images", sa.Integer(), nullable=True))
    op.create_table(
        "query_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("attack_id", sa.Integer(), nullable=False),
        sa.Column("defense_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("budget", sa.Integer(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("attack_exit_code", sa.Integer(), nullable=True),
        sa.Column("attack_timed_out", sa.Boolean(), nullable=False),
        sa.Column("defense_failure", sa.Text(), nullable=True),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("attack_log", sa.Text(), nullable=True),
        sa.Column("defense_log", sa.Text(), nullable=True),
        sa.Column("status", sa.Enum("pending", "queued", "running", "done", "error", name="jobstatus",
                                    native_enum=False, length=20), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["attack_id"], ["submissions.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["defense_id"], ["submissions.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("attack_id", "defense_id", "batch_id"),
    )
    op.create_index(op.f("ix_query_jobs_attack_id"), "query_jobs", ["attack_id"], unique=False)
    op.create_index(op.f("ix_query_jobs_defense_id"), "query_jobs", ["defense_id"], unique=False)
    op.create_index(op.f("ix_query_jobs_status"), "query_jobs", ["status"], unique=False)
    op.create_table(
        "query_results",
        sa.Column("query_job_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("queries", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("linf", sa.Integer(), nullable=False),
        sa.Column("l2", sa.Float(), nullable=False),
        sa.Column("missing", sa.Boolean(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=True),
        sa.Column("labels_at", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["query_job_id"], ["query_jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("query_job_id", "image_id"),
    )


def downgrade() -> None:
    op.drop_table("query_results")
    op.drop_index(op.f("ix_query_jobs_status"), table_name="query_jobs")
    op.drop_index(op.f("ix_query_jobs_defense_id"), table_name="query_jobs")
    op.drop_index(op.f("ix_query_jobs_attack_id"), table_name="query_jobs")
    op.drop_table("query_jobs")
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("query_images")
        batch.drop_column("query_top_k")
        batch.drop_column("query_budget")
