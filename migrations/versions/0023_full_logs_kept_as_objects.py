"""full logs kept as objects

Only the tail of a container run's log was kept (a job attempt's ``log_excerpt``, a dry
run's report); the whole log is now an object of the store, under its content hash, which
the attempt and the dry run name with its size, for the submission's team and organizers to
download. Rows from before keep no full log (null).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-04 11:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None

TABLES = ("job_attempts", "dry_runs")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("log_sha256", sa.String(64), nullable=True))
            batch.add_column(sa.Column("log_size", sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("log_size")
            batch.drop_column("log_sha256")
