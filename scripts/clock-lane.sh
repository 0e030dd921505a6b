#!/usr/bin/env bash
# The clock lane: the tests marked `clock` (what the time of day can change: who the demo
# scenario has on call, handoffs, schedule edits "effective now") run again with the one clock
# pinned at other times of day (tests/support/env.py, RRPD_TEST_CLOCK); the suite itself runs at
# 09:00. 2026-12-07 is a day whose Follow-the-Sun afternoon cover (12:00-18:00) is Carol's,
# 2026-12-08 a contractor's (18:00 is the end of it); 23:59:30 makes the run cross midnight
# (the Secondary schedule hands off at 00:00 UTC). About 90 s a pin on this machine.
# Usage: scripts/clock-lane.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
PINS=(
  2026-12-07T00:30:00Z
  2026-12-07T06:00:00Z
  2026-12-07T12:30:00Z
  2026-12-08T18:00:00Z
  2026-12-07T23:59:30Z
)
for pin in "${PINS[@]}"; do
  echo "== clock lane: now pinned to $pin"
  RRPD_TEST_CLOCK="$pin" .venv/bin/pytest -m clock -q "$@"
done
