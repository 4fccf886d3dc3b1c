"""adversarial images record their L2 distance

``l2``: the Euclidean norm of the perturbation actually kept (after clipping), on the
0-255 scale over every value of the 299x299x3 image, stored beside ``linf`` so that an
attack's page and the export give both norms per epsilon. Rows stored before it have no
L2 (NULL, shown as unknown): recomputing it would mean reading every stored image again.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-25 18:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("adversarial_images") as batch_op:
        batch_op.add_column(sa.Column("l2", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("adversarial_images") as batch_op:
        batch_op.drop_column("l2")
