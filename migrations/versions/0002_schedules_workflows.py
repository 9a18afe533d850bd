"""Schedule wake-up triggers and the workflow progress trigger.

Revision ID: 0002
"""

from pgsched.migrate_ops import run_sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0002_schedules_workflows.sql")


def downgrade() -> None:
    run_sql_file("0002_schedules_workflows.down.sql")
