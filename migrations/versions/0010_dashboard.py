"""Indexes for the web dashboard: retrying tasks by queue, the dead letter newest first, and a
BRIN index on attempts' finish times (the throughput charts' windows).

Revision ID: 0010
Revises: 0009
"""

from pgsched.migrate_ops import run_sql_file

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0010_dashboard.sql")


def downgrade() -> None:
    run_sql_file("0010_dashboard.down.sql")
