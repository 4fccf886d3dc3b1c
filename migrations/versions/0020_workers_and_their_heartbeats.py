"""workers and their heartbeats

Nothing recorded which processes took jobs: an organizer could not see which hosts and
workers were alive, what each could run, or what a host that went away had been running.
Every worker (a Celery worker, an `arena run`, the web's runner) now keeps a row its
heartbeat refreshes, and each job and container run records the worker that claimed it.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 05:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

JOB_TABLES = ("attack_jobs", "defense_jobs", "dry_runs")


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("engine_version", sa.String(length=50), nullable=True),
        sa.Column("runtimes", sa.JSON(), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("queues", sa.JSON(), nullable=False),
        sa.Column("images", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("draining", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    for table in JOB_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("worker_id", sa.Integer(), nullable=True))
    with op.batch_alter_table("job_attempts") as batch:
        batch.add_column(sa.Column("worker_id", sa.Integer(), nullable=True))
        batch.create_index(batch.f("ix_job_attempts_worker_id"), ["worker_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_attempts") as batch:
        batch.drop_index(batch.f("ix_job_attempts_worker_id"))
        batch.drop_column("worker_id")
    for table in JOB_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("worker_id")
    op.drop_table("workers")
