"""classifications keep one foreign key, to their defense job

The keys on defense_id, image_id and adversarial_image_id each fired a trigger per row
and made COPY nearly three times slower on PostgreSQL; every delete already reaches the
classifications through defense_job_id (see models.Classification).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 09:50:00
"""

from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

DROPPED = {"defense_id": "submissions", "image_id": "images", "adversarial_image_id": "adversarial_images"}
#: SQLite's keys have no names: batch mode names the reflected ones by this convention.
CONVENTION = {"fk": "fk_%(table_name)s_%(column_0_name)s"}


def _name(column: str) -> str:
    """PostgreSQL named the keys of 0001 itself; SQLite's get the convention's name."""
    if op.get_bind().dialect.name == "postgresql":
        return f"classifications_{column}_fkey"
    return f"fk_classifications_{column}"


def upgrade() -> None:
    with op.batch_alter_table("classifications", naming_convention=CONVENTION) as batch_op:
        for column in DROPPED:
            batch_op.drop_constraint(_name(column), type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("classifications", naming_convention=CONVENTION) as batch_op:
        for column, table in DROPPED.items():
            batch_op.create_foreign_key(_name(column), table, [column], ["id"], ondelete="CASCADE")
