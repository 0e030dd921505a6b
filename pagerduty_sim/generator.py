"""Generated scenarios for load tests: one huge account, or a fleet of small ones.

Built straight into dataclasses (no parsing/validation pass) so 2,000 accounts take well under a
few seconds. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from .scenario import (
    Account,
    ApiKey,
    EscalationPolicy,
    Layer,
    OAuthApp,
    Override,
    Scenario,
    Schedule,
    Target,
    User,
)

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday; every generated rotation starts here
TURNS = (43_200, 86_400, 604_800)
ZONES = ("UTC", "America/New_York", "Europe/London", "Asia/Tokyo", "America/Los_Angeles")
OAUTH_SCOPES = ["openid", "users.read", "schedules.read", "oncalls.read", "abilities.read"]


def _fill_account(
    acct: Account,
    prefix: str,
    n_users: int,
    n_schedules: int,
    rng: random.Random,
    email_domain: str,
    *,
    v3_share: float = 0.05,
    unused_share: float = 0.1,
) -> None:
    for j in range(n_users):
        uid = f"{prefix}U{j:05d}"
        acct.users[uid] = User(
            id=uid,
            name=f"User {j:05d}",
            email=f"user{j:05d}@{email_domain}",
            time_zone=ZONES[j % len(ZONES)],
            role="admin" if j == 0 else "user",
        )
    user_ids = list(acct.users)
    sched_ids: list[str] = []
    for k in range(n_schedules):
        sid = f"{prefix}S{k:04d}"
        members = rng.sample(user_ids, min(len(user_ids), rng.randint(3, 8)))
        turn = rng.choice(TURNS)
        sched = Schedule(
            id=sid,
            name=f"Schedule {k:04d}",
            time_zone=ZONES[k % len(ZONES)],
            layers=[
                Layer(f"{sid}L1", "Layer 1", EPOCH, EPOCH, turn, members),
            ],
        )
        if rng.random() < 0.2:
            # a second, higher-priority layer covering part of the week
            sched.layers.append(
                Layer(
                    f"{sid}L2",
                    "Layer 2",
                    EPOCH + timedelta(hours=rng.randint(0, 23)),
                    EPOCH,
                    86_400,
                    rng.sample(user_ids, min(len(user_ids), 2)),
                )
            )
        if rng.random() < 0.2:
            start = EPOCH + timedelta(days=rng.randint(0, 900), hours=rng.randint(0, 23))
            sched.overrides.append(
                Override(
                    f"{sid}O1",
                    start,
                    start + timedelta(hours=rng.randint(1, 48)),
                    rng.choice(user_ids),
                )
            )
        if rng.random() < v3_share:
            sched.version = 3  # upgraded: only under /v3/schedules, same on-call semantics
        acct.schedules[sid] = sched
        sched_ids.append(sid)
    used = [s for s in sched_ids if rng.random() >= unused_share]
    for n, sid in enumerate(used):
        rules = [[Target("schedule", sid)]]
        if len(used) > 1 and rng.random() < 0.5:
            rules.append([Target("schedule", rng.choice(used))])
        acct.escalation_policies[f"{prefix}P{n:04d}"] = EscalationPolicy(
            f"{prefix}P{n:04d}", f"Policy {n:04d}", rules
        )


def large_account(
    n_users: int = 10_000, n_schedules: int = 1_000, seed: int = 0, *, deleted_users: int = 0
) -> Scenario:
    """One US account `large` with many users/schedules; key label `large-readonly`.

    Builds 25,000 users in well under a second (the client must be tested past PagerDuty's
    10,000-record offset cap). `deleted_users` turns the last N users into deleted users'
    placeholders: gone from GET /users, still on their schedules and policies."""
    rng = random.Random(seed)
    acct = Account(id="large", name="Large Account", subdomain="large", region="us")
    _fill_account(acct, "PL", n_users, n_schedules, rng, "large.example")
    if deleted_users:
        for uid in list(acct.users)[-min(deleted_users, max(0, n_users - 1)) :]:
            user = acct.users.pop(uid)
            user.deleted_at = EPOCH
            acct.deleted_users[uid] = user
    first = next(iter(acct.users))
    return Scenario(
        name=f"large-{n_users}-{n_schedules}",
        accounts={acct.id: acct},
        api_keys=[ApiKey("large-readonly", "u+largeReadOnlyKey000001", acct.id)],
        oauth_apps=[
            OAuthApp(
                "large-oauth",
                "large-client-id",
                "large-client-secret",
                acct.id,
                list(OAUTH_SCOPES),
                authorize_as=first,
                name="Large OAuth app",
            )
        ],
    )


def fleet_key(i: int) -> str:
    """The API key of fleet account i (its label is `fleet-{i}`)."""
    return f"u+fleetKey{i:06d}"


def fleet(
    n_accounts: int,
    users_per_account: int = 50,
    schedules_per_account: int = 10,
    seed: int = 0,
) -> Scenario:
    """Accounts `fleet-{i}` (US), each with API key label `fleet-{i}` / value `fleet_key(i)` and
    OAuth app `fleet-{i}-oauth` (client `fleet-{i}-client` / secret `fleet-{i}-secret`)."""
    rng = random.Random(seed)
    sc = Scenario(name=f"fleet-{n_accounts}")
    for i in range(n_accounts):
        aid = f"fleet-{i}"
        acct = Account(id=aid, name=f"Fleet {i}", subdomain=f"fleet{i}", region="us")
        _fill_account(
            acct, f"F{i:05d}", users_per_account, schedules_per_account, rng, f"fleet{i}.example"
        )
        sc.accounts[aid] = acct
        sc.api_keys.append(ApiKey(aid, fleet_key(i), aid))
        sc.oauth_apps.append(
            OAuthApp(
                f"{aid}-oauth",
                f"{aid}-client",
                f"{aid}-secret",
                aid,
                list(OAUTH_SCOPES),
                authorize_as=next(iter(acct.users)),
                name=f"Fleet {i} app",
            )
        )
    return sc
