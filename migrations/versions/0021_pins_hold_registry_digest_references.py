"""pins hold registry digest references

With a registry (ARENA_REGISTRY), a pin is a digest reference,
HOST:PORT/repository@sha256:<64 hex digits>, no longer an engine's 71-character image id:
100 characters leave the registry's name and the repository less than 30. A reference's
name may be 255 characters long and its digest adds 72: 400 holds any. A downgrade fails
while a longer pin is stored (re-pin those submissions without a registry first).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-04 08:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None

COLUMNS = {"submissions": ["container_image", "container_gpu_image"], "job_attempts": ["container_image"]}


def _resize(length: int, was: int) -> None:
    for table, columns in COLUMNS.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.alter_column(column, type_=sa.String(length), existing_type=sa.String(was), existing_nullable=True)


def upgrade() -> None:
    _resize(400, 100)


def downgrade() -> None:
    _resize(100, 400)
