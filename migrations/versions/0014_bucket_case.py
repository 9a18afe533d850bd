"""The attempt counters' trigger finds the duration bucket with a CASE over float8 bounds.

Revision ID: 0014
Revises: 0013
"""

from pgsched.migrate_ops import run_sql_file

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0014_bucket_case.sql")


def downgrade() -> None:
    run_sql_file("0014_bucket_case.down.sql")
