"""Both halves of connecting a workspace to PagerDuty.

API half: setup (the live connection, credentials, API key), oauth_login (start + callback),
status. Worker half: activation (validate a key, exchange a code), tokens (a usable credential,
OAuth refresh). messages holds every sentence admins read.
"""
