"""the round owns its epsilon schedule

Planning took the schedule (every epsilon on every batch, or the 2017 final's round robin)
from the settings in one place and from nowhere (every epsilon) in another, so publishing a
round-robin round planned off-schedule jobs and then refused to publish. Each round now
stores its schedule beside its epsilons and time limit. Existing rounds get the schedule the
installation ran with: ``ARENA_EPS_SCHEDULE`` in the environment of `arena db upgrade`,
"all" when it is unset (the default it always had).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 17:40:00
"""

import os

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

SCHEDULES = ("all", "round_robin")


def upgrade() -> None:
    ran_with = os.environ.get("ARENA_EPS_SCHEDULE", "all").strip().lower()
    if ran_with not in SCHEDULES:
        raise ValueError(f"ARENA_EPS_SCHEDULE must be one of {', '.join(SCHEDULES)}, got {ran_with!r}")
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("eps_schedule", sa.Enum(*SCHEDULES, name="epsschedule", native_enum=False,
                                                              length=20), nullable=False, server_default="all"))
    op.get_bind().execute(sa.text("UPDATE rounds SET eps_schedule = :schedule"), {"schedule": ran_with})


def downgrade() -> None:
    with op.batch_alter_table("rounds", schema=None) as batch_op:
        batch_op.drop_column("eps_schedule")
