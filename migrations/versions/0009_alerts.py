"""Alerts: channels and rules synced from YAML, an outbox of events written by triggers in the
transaction of the state change (a task dead-lettered or retrying, a workflow failed or
succeeded, a worker declared dead, a schedule misfired), storm-control state and the
notifications sent.

Revision ID: 0009
Revises: 0008
"""

from pgsched.migrate_ops import run_sql_file

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0009_alerts.sql")


def downgrade() -> None:
    run_sql_file("0009_alerts.down.sql")
