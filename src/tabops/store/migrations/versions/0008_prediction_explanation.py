"""predictions keep the explanation returned with them

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

A prediction asked with ``explain=true`` (or of a use case whose spec says
``explain: always``) is answered with its explanation: base value, per-feature
contributions and reasons. The audit row keeps what was returned, so that the answer can
be shown and checked later; predictions not explained keep NULL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a nullable column without a default: no table rewrite on PostgreSQL
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "explanation",
                sa.JSON(),
                nullable=True,
                comment="the explanation returned with it (Explanation.as_dict), if one was",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_column("explanation")
