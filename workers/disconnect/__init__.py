"""Disconnecting a workspace from PagerDuty: the API half (request), the one-transaction
worker half (transaction), and what the admin can revoke in PagerDuty (revoke). The task the
API half enqueues is an outbox row of its transaction, so it cannot be lost (no sweep)."""
