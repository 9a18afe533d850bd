"""Alerts: rules over events and thresholds, notifications to webhooks, Slack and email,
delivered durably as pgsched tasks. See docs/alerts.md."""

from pgsched.alerts.config import DELIVERY_TYPE, load_alerts, parse_alerts
from pgsched.alerts.rules import EVENTS, THRESHOLDS

__all__ = ["DELIVERY_TYPE", "EVENTS", "THRESHOLDS", "load_alerts", "parse_alerts"]
