"""Initial schema: tasks, workers, executions, dead letter, schedules, workflows, and the
triggers that notify workers, wake schedulers and move workflows forward.

Revision ID: 0001
"""

from pgsched.migrate_ops import run_sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0001_initial.sql")


def downgrade() -> None:
    run_sql_file("0001_initial.down.sql")
