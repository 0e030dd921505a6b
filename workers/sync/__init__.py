"""Syncing a connection: run (one sync, passes), records (the SyncRun bookkeeping), apply (the
diff), mirror (the directory's part of it), coalescing (one sync per connection at a time),
fanout (beat), request (sync now), messages (what admins read), retention (old ``sync_runs``).
docs/sync-and-disconnect.md has the algorithm."""

# Importing the package registers the retention loop in every worker node.
from workers.sync import retention as retention
