"""team names compared whatever their case

"bravo", "BRAVO" and a full-width "ｂｒａｖｏ" were three teams. Each team gains the key its
name is compared by (Unicode NFKC, then case folding), unique. In an existing database where
two teams' names differ by case alone, the older team keeps the plain key and the other gets
its id appended, so both keep working (by token and by their pages) and neither name can be
taken a third time.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 11:05:00
"""

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def _key(name: str) -> str:
    """``models.name_key`` as it was written with this revision."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).strip().casefold())


def upgrade() -> None:
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_key", sa.String(length=200), nullable=True))
    connection = op.get_bind()
    taken: set[str] = set()
    for team_id, name in connection.execute(sa.text("SELECT id, name FROM teams ORDER BY id")).all():
        key = _key(name)
        if key in taken:
            key = f"{key[:180]}#{team_id}"
        taken.add(key)
        connection.execute(sa.text("UPDATE teams SET name_key = :key WHERE id = :id"), {"key": key, "id": team_id})
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_teams_name_key"), ["name_key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("teams", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_teams_name_key"))
        batch_op.drop_column("name_key")
