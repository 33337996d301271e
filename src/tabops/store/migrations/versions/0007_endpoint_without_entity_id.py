"""recorded endpoints without raw entity ids

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

``prediction_requests.endpoint`` held the raw request path, so a call by entity id kept
the id in clear (``/usecases/credit/predict/4242``) beside its pseudonym in
``predictions.entity_id``. The server now records the route's template
(``/usecases/credit/predict/{entity_id}``); this rewrites the rows recorded before.
Nothing to undo on downgrade: the raw ids are not kept anywhere.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TEMPLATE = "{entity_id}"


def upgrade() -> None:
    conn = op.get_bind()
    query = sa.text("SELECT DISTINCT usecase FROM prediction_requests")
    usecases: list[str] = list(conn.execute(query).scalars())
    for usecase in usecases:
        for prefix in ("", "shadow:"):
            path = f"{prefix}/usecases/{usecase}/predict/"
            conn.execute(
                sa.text(
                    "UPDATE prediction_requests SET endpoint = :template "
                    "WHERE usecase = :usecase AND endpoint LIKE :pattern AND endpoint <> :template"
                ),
                {
                    "template": path + _TEMPLATE,
                    "usecase": usecase,
                    # a "_" of the name is a LIKE wildcard: harmless, usecase matches exactly
                    "pattern": path + "%",
                },
            )


def downgrade() -> None:
    pass
