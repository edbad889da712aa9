"""Model versions record their network configuration (input normalisation, patch resolution, widths).

The checkpoint always carried it; the column makes it visible in the model list without loading
every checkpoint. Existing versions are filled from their checkpoints; one that cannot be read
stays NULL (it could not be activated either).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("network_config", sa.JSON(), nullable=True))
    versions = sa.table(
        "model_versions",
        sa.column("id", sa.Integer),
        sa.column("checkpoint", sa.LargeBinary),
        sa.column("network_config", sa.JSON),
    )
    conn = op.get_bind()
    ids = [row.id for row in conn.execute(sa.select(versions.c.id))]
    for version_id in ids:  # one checkpoint in memory at a time
        blob = conn.execute(sa.select(versions.c.checkpoint).where(versions.c.id == version_id)).scalar_one()
        config = _network_config(blob)
        if config is not None:
            conn.execute(versions.update().where(versions.c.id == version_id).values(network_config=config))


def _network_config(blob: bytes) -> dict | None:
    try:
        from ml.checkpoint import load

        return load(blob).model_cfg.to_dict()
    except Exception:  # unreadable or foreign: leave it unknown
        return None


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("network_config")
