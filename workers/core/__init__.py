"""Shared infrastructure: settings, database, Redis, locks, encryption, metrics, logging,
audit, access checks. No feature logic lives here."""
