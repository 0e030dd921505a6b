"""The API fixtures (tests/support/api.py): a TestClient, captured publishes, a world of people."""

from tests.support.api import client, sent, world

__all__ = ["client", "sent", "world"]
