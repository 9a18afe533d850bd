"""A bulk submission notifies once per queue: the insert trigger skips rows of a transaction
marked pgsched.inserts_notified = on (set by Client.submit_many, which notifies itself).

Revision ID: 0003
Revises: 0002
"""

from pgsched.migrate_ops import run_sql_file

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0003_bulk_notify.sql")


def downgrade() -> None:
    run_sql_file("0003_bulk_notify.down.sql")
