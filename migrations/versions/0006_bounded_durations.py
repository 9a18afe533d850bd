"""Durations a task or schedule holds (timeout, backoff_base, backoff_cap) are at most 100
years, so a worker can add them to now() and wait on them.

Revision ID: 0006
Revises: 0005
"""

from pgsched.migrate_ops import run_sql_file

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0006_bounded_durations.sql")


def downgrade() -> None:
    run_sql_file("0006_bounded_durations.down.sql")
