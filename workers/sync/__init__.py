"""Syncing a connection: run (one sync, passes), records (the SyncRun bookkeeping), apply (the
diff), coalescing (one sync per connection at a time), fanout (beat), request (sync now),
messages (what admins read). docs/sync-and-disconnect.md has the algorithm."""
