"""Index for "each annotator's latest label per patch" (the label grid and the consensus).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patch_labels", schema=None) as batch_op:
        batch_op.create_index(
            "ix_patch_labels_image_id_row_col_user_id_id", ["image_id", "row", "col", "user_id", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("patch_labels", schema=None) as batch_op:
        batch_op.drop_index("ix_patch_labels_image_id_row_col_user_id_id")
