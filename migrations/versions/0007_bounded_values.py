"""What a row may hold is what the code can handle: durations (timeout, backoff_base,
backoff_cap, every) at most 100 years, a task's run_at a finite time between 1900 and 9999,
a ready task has an attempt left, and only a workflow's task is blocked.

Revision ID: 0007
Revises: 0006
"""

from pgsched.migrate_ops import run_sql_file

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0007_bounded_values.sql")


def downgrade() -> None:
    run_sql_file("0007_bounded_values.down.sql")
