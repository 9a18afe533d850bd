"""Secure by default: the recovery gate is a table lock only the fleet may take; shell tasks
only from members of pgsched_shell; bounded payloads, schedule intervals and misfire caps.

Revision ID: 0011
Revises: 0010
"""

from pgsched.migrate_ops import run_sql_file

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0011_security.sql")


def downgrade() -> None:
    run_sql_file("0011_security.down.sql")
