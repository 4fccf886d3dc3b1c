"""classifications keyed by (defense job, image), with no other index and no foreign key

The surrogate id, the index per job, the two partial unique indexes and the key to the
defense job each cost work per inserted row (the key a trigger on PostgreSQL); one
primary key (defense_job_id, image_id) refuses a second answer exactly as the two unique
indexes did, since a defense job is one defense over one attack job or one clean batch.
Answers are now deleted with their jobs by ``planning.forget`` rather than by the key's
cascade. On SQLite the table is WITHOUT ROWID: the rows live in the key's own b-tree.

Revision ID: 0013
Revises: 0010
Create Date: 2026-11-25 17:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0010'
branch_labels = None
depends_on = None

#: SQLite's keys have no names: batch mode names the reflected ones by this convention (as 0006).
CONVENTION = {"fk": "fk_%(table_name)s_%(column_0_name)s"}
KEYED = ["defense_job_id", "image_id"]


def _foreign_key() -> str:
    return "classifications_defense_job_id_fkey" if op.get_bind().dialect.name == "postgresql" else "fk_classifications_defense_job_id"


def _indexes() -> list[tuple[str, list[str], dict]]:
    """The three indexes of 0001, as (name, columns, options)."""
    present, absent = sa.text("adversarial_image_id IS NOT NULL"), sa.text("adversarial_image_id IS NULL")
    return [
        ("ix_classifications_defense_job_id", ["defense_job_id"], {}),
        ("uq_classification_adversarial", ["defense_id", "adversarial_image_id"],
         dict(unique=True, sqlite_where=present, postgresql_where=present)),
        ("uq_classification_clean", ["defense_id", "image_id"],
         dict(unique=True, sqlite_where=absent, postgresql_where=absent)),
    ]


def upgrade() -> None:
    with op.batch_alter_table("classifications", naming_convention=CONVENTION,
                              table_kwargs={"sqlite_with_rowid": False}, recreate="auto") as batch_op:
        for name, _, _ in _indexes():
            batch_op.drop_index(name)
        batch_op.drop_constraint(_foreign_key(), type_="foreignkey")
        batch_op.drop_column("id")
        batch_op.create_primary_key("classifications_pkey", KEYED)


def downgrade() -> None:
    # Answers whose job is gone would break the key added back; with the key they had gone too.
    op.execute("DELETE FROM classifications WHERE defense_job_id NOT IN (SELECT id FROM defense_jobs)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE classifications DROP CONSTRAINT classifications_pkey")
        op.execute("ALTER TABLE classifications ADD COLUMN id SERIAL PRIMARY KEY")
    else:
        _add_id_on_sqlite()
    with op.batch_alter_table("classifications", naming_convention=CONVENTION) as batch_op:
        batch_op.create_foreign_key(_foreign_key(), "defense_jobs", ["defense_job_id"], ["id"], ondelete="CASCADE")
        for name, columns, options in _indexes():
            batch_op.create_index(name, columns, **options)


def _add_id_on_sqlite() -> None:
    """SQLite cannot add a primary key column: the table is made again, as 0010 had it, and
    the rows get their ids in the key's order."""
    columns = "defense_job_id, defense_id, image_id, adversarial_image_id, label, problem"
    op.create_table(
        "_classifications_0010",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("defense_job_id", sa.Integer(), nullable=False),
        sa.Column("defense_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.Column("adversarial_image_id", sa.Integer(), nullable=True),
        sa.Column("label", sa.Integer(), nullable=True),
        sa.Column("problem", sa.Enum("missing", "invalid", "duplicate", name="classificationproblem",
                                     native_enum=False, length=20), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute(f"INSERT INTO _classifications_0010 ({columns}) SELECT {columns} FROM classifications "
               "ORDER BY defense_job_id, image_id")
    op.drop_table("classifications")
    op.rename_table("_classifications_0010", "classifications")
