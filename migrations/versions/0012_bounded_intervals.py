"""The other durations a row carries from SQL are bounded too: an alert rule's min_interval and
window at most 100 years, a schedule's timeout positive.

Revision ID: 0012
Revises: 0011
"""

from pgsched.migrate_ops import run_sql_file

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0012_bounded_intervals.sql")


def downgrade() -> None:
    run_sql_file("0012_bounded_intervals.down.sql")
