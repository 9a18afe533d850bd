"""The claim's load-weighted limit as a PL/pgSQL function (its plans are cached per session,
where the claim statement's CTEs were planned again on every claim).

Revision ID: 0002
Revises: 0001
"""

from pgsched.migrate_ops import run_sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0002_claim_limit.sql")


def downgrade() -> None:
    run_sql_file("0002_claim_limit.down.sql")
