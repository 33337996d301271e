"""training job owner and heartbeat (a lease)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24

A job was judged orphaned when its worker process id was not alive on the host that
looked. With several workers or replicas, a starting process could not see the others'
processes, and failed their jobs (a queued job, with no process yet, always). Now the
API process that owns a job renews ``heartbeat_at`` while it holds the job; a job is
orphaned when its lease runs out, or at once when its owner, on this host, is gone.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "owner",
                sa.String(length=255),
                nullable=True,
                comment="host:pid of the API process that runs the job",
            )
        )
        batch_op.add_column(
            sa.Column(
                "heartbeat_at",
                sa.DateTime(timezone=True),
                nullable=True,
                comment="renewed by the owner while the job is active",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("owner")
