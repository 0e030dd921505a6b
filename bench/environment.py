"""What the process-starting benchmarks share: their environment (a PostgreSQL database, a Redis
key prefix and a var directory of their own) and how they report a distribution."""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path


def configure(name: str, run: str, database: str, **extra: str) -> Path:
    """Settings for this process and every ``rrpd`` process it starts; returns the var dir."""
    from cryptography.fernet import Fernet

    var = Path(tempfile.gettempdir()) / f"rrpd-bench-{name}-{run}"
    var.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        RRPD_ENV="test",
        RRPD_DATABASE_URL=f"postgresql://postgres@127.0.0.1:5432/{database}",
        RRPD_BROKER_URL="redis://127.0.0.1:6379/0",
        RRPD_RESULT_BACKEND="redis://127.0.0.1:6379/1",
        RRPD_REDIS_KEY_PREFIX=f"rrpdbench-{run}",
        RRPD_VAR_DIR=str(var),
        RRPD_LOG_LEVEL="WARNING",
        RRPD_ENCRYPTION_KEYS=f"b1={Fernet.generate_key().decode()}",
        RRPD_API_JWT_SECRET="bench-secret-" + "x" * 40,
        **extra,
    )
    return var


def percentiles(values: list[float], digits: int = 3) -> dict[str, float | None]:
    """p50, p99 and max in seconds (None for each when nothing was measured)."""
    if not values:
        return {"p50_s": None, "p99_s": None, "max_s": None}
    ordered = sorted(values)
    return {
        "p50_s": round(statistics.median(ordered), digits),
        "p99_s": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], digits),
        "max_s": round(ordered[-1], digits),
    }
