"""rounds may refuse stateful served defenses

A served defense must answer the same image the same way whatever came before; its dry run
asks the batch one by one, in reverse and in one query. A round now says whether a defense
whose answers differ is rejected at intake (``refuse_stateful_defenses``) or, as before,
accepted with a flag (the default).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04 11:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(sa.Column("refuse_stateful_defenses", sa.Boolean(), server_default=sa.text("false"),
                                   nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("refuse_stateful_defenses")
