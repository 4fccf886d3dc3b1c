"""the tournament's settings row exists from the start

Reading the settings used to insert the row on first read, so every page render could
write; the row is now made here once, and reading it never writes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 14:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

SETTINGS_ROW = 1


def upgrade() -> None:
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT count(*) FROM tournament WHERE id = :id"), {"id": SETTINGS_ROW}).scalar() == 0:
        bind.execute(
            sa.text("INSERT INTO tournament (id, title, leaderboards_public, uploads_open) VALUES (:id, :title, :p, :o)"),
            {"id": SETTINGS_ROW, "title": "Arena tournament", "p": True, "o": True},
        )


def downgrade() -> None:
    """The row stays: 0006's code made the same row on first read, so it is valid there."""
