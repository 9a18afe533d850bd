"""Workflow cancel is set-based: the progress trigger stands aside while a statement over
the whole workflow settles it itself.

Revision ID: 0008
Revises: 0007
"""

from pgsched.migrate_ops import run_sql_file

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0008_workflow_bulk.sql")


def downgrade() -> None:
    run_sql_file("0008_workflow_bulk.down.sql")
