"""The ready index is keyed by (queue, task_type) before the claim order: a claim reads only
the ready rows of the types its worker runs.

Revision ID: 0013
Revises: 0012
"""

from pgsched.migrate_ops import run_sql_file

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0013_ready_by_type.sql")


def downgrade() -> None:
    run_sql_file("0013_ready_by_type.down.sql")
