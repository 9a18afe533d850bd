"""Finished tasks move out of the hot table to pgsched.finished_tasks; pgsched.all_tasks shows both.

Revision ID: 0015
Revises: 0014
"""

from pgsched.migrate_ops import run_sql_file

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0015_finished_tasks.sql")


def downgrade() -> None:
    run_sql_file("0015_finished_tasks.down.sql")
