"""each round names its inputs under its own key

Input names were a keyed hash, under one random key per installation (``naming.key`` in the
data folder), of an image's content and its database id: a round run again on another
installation gave its submissions other names, and an attack whose output follows the order
of its files other images. Each round now has a random key of its own, and names are made
of the image's content and its name in the dataset, so a published round's bundle can carry
its key without revealing any other round's names, and ``arena round replay`` reproduces it.

Existing rounds get a key each. A round that already has results keeps them, but they were
named the old way: it is marked not replayable, and its bundle carries no key.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 05:00:00
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None

#: Rounds whose dataset has a finished job: their stored results were named the old way.
HAVE_RESULTS = """
UPDATE rounds SET replayable = false WHERE EXISTS (
    SELECT 1 FROM batches JOIN attack_jobs ON attack_jobs.batch_id = batches.id
    WHERE batches.dataset_id = rounds.dataset_id AND attack_jobs.status = 'done'
) OR EXISTS (
    SELECT 1 FROM batches JOIN defense_jobs ON defense_jobs.batch_id = batches.id
    WHERE batches.dataset_id = rounds.dataset_id AND defense_jobs.status = 'done'
)
"""


def upgrade() -> None:
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(sa.Column("naming_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("replayable", sa.Boolean(), nullable=False, server_default=sa.text("true")))
    connection = op.get_bind()
    for (round_id,) in connection.execute(sa.text("SELECT id FROM rounds")).all():
        connection.execute(sa.text("UPDATE rounds SET naming_key = :key WHERE id = :id"),
                           {"key": secrets.token_hex(32), "id": round_id})
    connection.execute(sa.text(HAVE_RESULTS))
    with op.batch_alter_table("rounds") as batch:
        batch.alter_column("naming_key", existing_type=sa.String(64), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("replayable")
        batch.drop_column("naming_key")
