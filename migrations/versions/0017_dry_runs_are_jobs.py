"""dry runs are jobs

An upload was checked inside the request that brought it (pinning, the dry run's
containers, on the web host's engine). Now the request stores the submission as
``queued`` with a dry-run job, and a runner or worker checks it: the job has the states,
attempt (fencing token) and lease of attack and defense jobs. A submission left
``validating`` by an interrupted intake becomes ``queued`` with a dry run to do, under the
round it entered.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 21:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

STATUSES = ("pending", "queued", "running", "done", "error")


def upgrade() -> None:
    op.create_table(
        "dry_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("status", sa.Enum(*STATUSES, name="jobstatus", native_enum=False, length=20), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["round_id"], ["rounds.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("submission_id"),
    )
    op.create_index(op.f("ix_dry_runs_round_id"), "dry_runs", ["round_id"], unique=False)
    op.create_index(op.f("ix_dry_runs_status"), "dry_runs", ["status"], unique=False)
    bind = op.get_bind()
    bind.execute(sa.text(
        "INSERT INTO dry_runs (submission_id, round_id, created_at, status, attempt) "
        "SELECT s.id, MIN(e.round_id), CURRENT_TIMESTAMP, 'pending', 0 FROM submissions s "
        "JOIN round_entries e ON e.submission_id = s.id WHERE s.status = 'validating' GROUP BY s.id"))
    bind.execute(sa.text("UPDATE submissions SET status = 'queued' WHERE status = 'validating'"))


def downgrade() -> None:
    op.get_bind().execute(sa.text("UPDATE submissions SET status = 'validating' WHERE status IN ('queued', 'checking')"))
    op.drop_index(op.f("ix_dry_runs_status"), table_name="dry_runs")
    op.drop_index(op.f("ix_dry_runs_round_id"), table_name="dry_runs")
    op.drop_table("dry_runs")
