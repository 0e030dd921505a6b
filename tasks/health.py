"""A trivial task operators (and the smoke test) use to prove a worker consumes its queue."""

from __future__ import annotations

from workers.celery_app import app


@app.task(
    name="rrpd.ping",
    queue="interactive",
    ignore_result=False,
    soft_time_limit=10,
    time_limit=20,
    max_retries=0,
)
def ping(*, payload: str = "pong") -> dict[str, str]:
    return {"reply": payload}
