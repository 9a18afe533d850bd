"""Workflow cancel is set-based: the progress trigger stands aside while a statement over
the whole workflow settles it itself.

Revision ID: 0007
Revises: 0006
"""

from pgsched.migrate_ops import run_sql_file

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0007_workflow_bulk.sql")


def downgrade() -> None:
    run_sql_file("0007_workflow_bulk.down.sql")
