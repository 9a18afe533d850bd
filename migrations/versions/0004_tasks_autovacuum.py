"""autovacuum visits pgsched.tasks after 2% of its rows (plus 1,000) are dead, not 20%: the
ready index's dead entries after a drain beside a large backlog are removed within a
minute instead of never.

Revision ID: 0004
Revises: 0003
"""

from pgsched.migrate_ops import run_sql_file

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0004_tasks_autovacuum.sql")


def downgrade() -> None:
    run_sql_file("0004_tasks_autovacuum.down.sql")
