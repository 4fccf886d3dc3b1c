"""job attempts record their container run

The attempts claimed together ran in one container; ``run_id`` (the id of the run's first
attempt row) says so, where the submission page used to guess from figures they shared.
Earlier attempts get their own id: each is shown as a run of its own.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25 16:15:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_attempts") as batch_op:
        batch_op.add_column(sa.Column("run_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_job_attempts_run_id", ["run_id"])
    op.execute("UPDATE job_attempts SET run_id = id")


def downgrade() -> None:
    with op.batch_alter_table("job_attempts") as batch_op:
        batch_op.drop_index("ix_job_attempts_run_id")
        batch_op.drop_column("run_id")
