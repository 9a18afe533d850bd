"""The service layer's schema: metric counters kept by a trigger (the same on every replica of
`pgsched serve`), an index for blocked tasks (queue depth without a scan), API tokens stored
hashed, workflow descriptions, and the NOLOGIN group roles pgsched_submit, pgsched_worker,
pgsched_read and pgsched_admin.

Revision ID: 0006
Revises: 0005
"""

from pgsched.migrate_ops import run_sql_file

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0006_api.sql")


def downgrade() -> None:
    run_sql_file("0006_api.down.sql")
