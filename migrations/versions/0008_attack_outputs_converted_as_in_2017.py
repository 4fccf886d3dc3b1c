"""attack outputs converted as the 2017 evaluation converted them; packs fixed per submission

An attack output in another PNG mode (RGBA, P, L, 16-bit) or JPEG data is converted to an
RGB PNG and one of another size is resized, as the 2017 evaluation did, instead of being
replaced by the clean image; ``converted`` records the mode and format it came in.
``wrong_size`` now means the output was resized.

``submissions.pack_images`` fixes, once, how many images share a container run of the
submission, so that which batches run together never depends on a particular run's timing.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 15:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("adversarial_images") as batch_op:
        batch_op.add_column(sa.Column("converted", sa.String(length=40), nullable=True))
    with op.batch_alter_table("submissions") as batch_op:
        batch_op.add_column(sa.Column("pack_images", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch_op:
        batch_op.drop_column("pack_images")
    with op.batch_alter_table("adversarial_images") as batch_op:
        batch_op.drop_column("converted")
