"""web sessions: the login cookie carries a session id, never a token

A browser's login used to put the raw organizer or team token in a 30-day cookie. The
cookie now carries a random session id; ``web_sessions`` keeps its sha256, who it is
(a team, or null for the organizer), a binding to the credential it was opened with, and
when it expires. Logging out deletes the row.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sid_sha256", sa.String(length=64), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("binding", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("web_sessions") as batch_op:
        batch_op.create_index(batch_op.f("ix_web_sessions_sid_sha256"), ["sid_sha256"], unique=True)
        batch_op.create_index(batch_op.f("ix_web_sessions_team_id"), ["team_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_web_sessions_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_table("web_sessions")
