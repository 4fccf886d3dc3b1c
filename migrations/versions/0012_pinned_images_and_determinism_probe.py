"""pinned container images and the determinism probe

Submissions store the engine's image id their ``container`` and ``container_gpu`` tags
named at intake, and the share of dry-run images whose output differed between two runs;
every job attempt stores the image id it ran. A migration cannot ask the Docker engine, so
earlier submissions keep a null pin: the first run that needs one resolves the tag on its
engine and stores it (``sandbox.pinning``); their share stays null (never probed).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-25 18:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch_op:
        batch_op.add_column(sa.Column("container_image", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("container_gpu_image", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("nondeterministic_share", sa.Float(), nullable=True))
    with op.batch_alter_table("job_attempts") as batch_op:
        batch_op.add_column(sa.Column("container_image", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_attempts") as batch_op:
        batch_op.drop_column("container_image")
    with op.batch_alter_table("submissions") as batch_op:
        batch_op.drop_column("nondeterministic_share")
        batch_op.drop_column("container_gpu_image")
        batch_op.drop_column("container_image")
