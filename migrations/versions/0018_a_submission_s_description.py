"""a submission's description

Teams could say nothing about what they uploaded; Codabench and Kaggle pages show a
description beside each entry. A submission keeps the text its team typed at upload.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 02:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("description", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("description")
