"""query jobs keep attempts and full logs

A query job kept only its last run's outcome and log tails on its own row. Each claim of
one now records an attempt as the batch jobs' do (``job_attempts.query_job_id``: an attempt
names exactly one attack, defense or query job), with the attack's full log in
``log_sha256``/``log_size`` and the served defense's in ``served_log_sha256``/``served_log_size``.
Query jobs run before this revision have no attempt rows.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-04 15:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None

TWO_KINDS = "(attack_job_id IS NULL) <> (defense_job_id IS NULL)"
THREE_KINDS = " + ".join(f"(CASE WHEN {column} IS NULL THEN 0 ELSE 1 END)"
                         for column in ("attack_job_id", "defense_job_id", "query_job_id")) + " = 1"


def upgrade() -> None:
    with op.batch_alter_table("job_attempts") as batch:
        batch.add_column(sa.Column("query_job_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("served_log_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("served_log_size", sa.Integer(), nullable=True))
        batch.create_foreign_key("job_attempts_query_job_id_fkey", "query_jobs", ["query_job_id"], ["id"],
                                 ondelete="CASCADE")
        batch.create_index("ix_job_attempts_query_job_id", ["query_job_id"])
        batch.drop_constraint("exactly_one_job", type_="check")
        batch.create_check_constraint("exactly_one_job", sa.text(THREE_KINDS))


def downgrade() -> None:
    op.execute("DELETE FROM job_attempts WHERE query_job_id IS NOT NULL")
    with op.batch_alter_table("job_attempts") as batch:
        batch.drop_constraint("exactly_one_job", type_="check")
        batch.create_check_constraint("exactly_one_job", sa.text(TWO_KINDS))
        batch.drop_index("ix_job_attempts_query_job_id")
        batch.drop_constraint("job_attempts_query_job_id_fkey", type_="foreignkey")
        batch.drop_column("served_log_size")
        batch.drop_column("served_log_sha256")
        batch.drop_column("query_job_id")
