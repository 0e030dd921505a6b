"""Disconnecting a workspace from PagerDuty: the API half (request), the one-transaction
worker half (transaction), what the admin can revoke in PagerDuty (revoke), and the sweep that
re-sends lost disconnects (sweeps)."""
