"""Alerts: raised by the analysis agents (make_alert), managed and pushed by the alert service."""
