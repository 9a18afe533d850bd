"""The claim checks only the worker's own row (status and ceilings); the load-weighted share
comes with each heartbeat instead of being computed on every claim.

Revision ID: 0005
Revises: 0004
"""

from pgsched.migrate_ops import run_sql_file

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0005_claim_share.sql")


def downgrade() -> None:
    run_sql_file("0005_claim_share.down.sql")
