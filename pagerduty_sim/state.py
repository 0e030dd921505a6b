"""Mutable simulator state: scenario indexes, clock, tokens, rate limits, faults, counters."""

from __future__ import annotations

import itertools
import random
import secrets
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from joserfc.jwk import RSAKey

from .clock import system_now
from .scenario import Account, ApiKey, OAuthApp, Scenario, Schedule, User, load_scenario

DEFAULT_RATE_LIMIT = 960
# /oncalls has its own operation-specific limit on top of the per-credential one; PagerDuty does
# not publish the number, so this default is the simulator's choice (docs/simulator.md).
DEFAULT_ONCALLS_RATE_LIMIT = 120
ACCESS_TTL = 86400  # 1 day (facts: Scoped OAuth access token)
REFRESH_TTL = 30 * 86400  # 30 days
CODE_TTL = 30  # authorization codes live 30 seconds
REFRESH_WINDOW = 365 * 86400  # Scoped OAuth: 1-year rolling window from the authorization
DEFAULT_AUTH_ERROR_MODE = "text"  # 401 bodies are often not JSON (go-pagerduty#553, #469)
# The id_token's iss: "identity" (the current prose of PagerDuty's "OpenID token" page), "app"
# (its earlier version, its example tokens and reportedly its OIDC discovery), or any URL.
# Facts (OAuth): which one PagerDuty sends is not settled.
DEFAULT_OIDC_ISSUER = "identity"
# Whether the redirect back to the app carries `state`. RFC 6749 4.1.2 says it does (the
# default); no PagerDuty page mentions it, and its success redirect is shown as
# `{REDIRECT_URI}?code=...` (facts, OAuth): `false` plays that.
DEFAULT_ECHO_STATE = True


@dataclass
class Principal:
    """Who a REST request acts as. `user_id` is None for account-level API keys."""

    kind: str  # api_key | oauth
    label: str
    account: Account
    user_id: str | None
    scopes: frozenset[str] | None  # None = not scope-limited (API keys)
    bucket: str  # rate-limit bucket

    @property
    def user(self) -> User | None:
        return self.account.users.get(self.user_id) if self.user_id else None

    @property
    def sees_restricted(self) -> bool:
        """Schedules marked `restricted` are visible to account keys and admins only."""
        if self.user_id is None:
            return True
        user = self.user
        return bool(user and user.is_admin)

    @property
    def restricted_role(self) -> bool:
        """PagerDuty's Restricted Access role: sees only what they belong to."""
        user = self.user
        return bool(user and user.is_restricted)

    def can_see_user(self, uid: str) -> bool:
        user = self.user
        if user is None or not user.is_restricted:
            return True
        if uid == user.id:
            return True
        other = self.account.users.get(uid)
        return bool(other and set(other.teams) & set(user.teams))

    def can_see_schedule(self, s: Schedule) -> bool:
        if s.restricted and not self.sees_restricted:
            return False
        user = self.user
        if user is None or not user.is_restricted:
            return True
        return user.id in s.user_ids() or bool(set(s.teams) & set(user.teams))


@dataclass
class AuthCode:
    code: str
    app: OAuthApp
    user_id: str
    redirect_uri: str
    scopes: list[str]
    code_challenge: str
    issued_at: datetime
    used: bool = False


@dataclass
class Token:
    value: str
    kind: str  # access | refresh
    app: OAuthApp
    user_id: str
    scopes: list[str]
    issued_at: datetime
    expires_at: datetime
    grant_id: str  # the delegation: one per authorization, kept across refreshes
    authorized_at: datetime  # when the user authorized (start of the rolling refresh window)
    revoked: bool = False
    rotated: bool = False  # a refresh token that was already exchanged


@dataclass
class FaultRule:
    kind: str  # latency | error | timeout | truncated | non_json
    path_prefix: str = ""
    method: str | None = None
    query: dict[str, str] = field(default_factory=dict)
    times: int | None = None  # None = unlimited
    probability: float = 1.0
    latency_ms: int = 0
    seconds: float = 0.0
    status: int | None = None
    body: str | None = None
    id: int = 0
    hits: int = 0

    KINDS = ("latency", "error", "timeout", "truncated", "non_json")

    def matches(self, method: str, path: str, query: dict[str, list[str]]) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method and self.method.upper() != method:
            return False
        if not path.startswith(self.path_prefix):
            return False
        return all(v in query.get(k, []) for k, v in self.query.items())

    def public(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RateLimit:
    per_minute: int = DEFAULT_RATE_LIMIT
    enabled: bool = True
    bare_429: bool = False  # 429 without ratelimit headers or body (PagerDuty warns this happens)
    oncalls_per_minute: int = DEFAULT_ONCALLS_RATE_LIMIT  # extra limit on GET /oncalls


class SimState:
    def __init__(
        self,
        scenario: Any = "demo",
        *,
        rate_limit_per_minute: int = DEFAULT_RATE_LIMIT,
        auto_approve: bool = False,
        latency_ms: int = 0,
        oncalls_rate_limit_per_minute: int = DEFAULT_ONCALLS_RATE_LIMIT,
    ) -> None:
        self.clock_offset = 0.0
        self.rate = RateLimit(
            per_minute=rate_limit_per_minute, oncalls_per_minute=oncalls_rate_limit_per_minute
        )
        self.auto_approve = auto_approve
        self.latency_ms = latency_ms
        self.auth_error_mode = DEFAULT_AUTH_ERROR_MODE  # text (default) | json
        self.oidc_issuer = DEFAULT_OIDC_ISSUER
        self.echo_state = DEFAULT_ECHO_STATE
        self.access_ttl = ACCESS_TTL
        self.refresh_ttl = REFRESH_TTL
        self.code_ttl = CODE_TTL
        self.refresh_window = REFRESH_WINDOW
        self.faults: list[FaultRule] = []
        self._fault_ids = itertools.count(1)
        self._startup = (
            scenario,
            rate_limit_per_minute,
            auto_approve,
            latency_ms,
            oncalls_rate_limit_per_minute,
        )
        self.rng = random.Random()
        self.signing_key = RSAKey.generate_key(
            2048, parameters={"kid": secrets.token_hex(8), "use": "sig", "alg": "RS256"}
        )
        self._id_seq = itertools.count(1)
        self.load(scenario)

    # ------------------------------------------------------------------ clock

    def now(self) -> datetime:
        return system_now() + timedelta(seconds=self.clock_offset)

    # ------------------------------------------------------------------ scenario

    def load(self, source: Any) -> None:
        """Replace the scenario; tokens, codes, rate-limit buckets and counters start over."""
        self.scenario: Scenario = load_scenario(source, now=self.now())
        self.accounts: dict[str, Account] = self.scenario.accounts
        self.keys_by_value: dict[str, ApiKey] = {k.key: k for k in self.scenario.api_keys}
        self.keys_by_label: dict[str, ApiKey] = {k.label: k for k in self.scenario.api_keys}
        self.apps_by_client: dict[str, OAuthApp] = {
            a.client_id: a for a in self.scenario.oauth_apps
        }
        self.apps_by_label: dict[str, OAuthApp] = {a.label: a for a in self.scenario.oauth_apps}
        self.codes: dict[str, AuthCode] = {}
        self.access_tokens: dict[str, Token] = {}
        self.refresh_tokens: dict[str, Token] = {}
        self.buckets: dict[str, list[float]] = {}
        self.reset_stats()

    def reset(self) -> None:
        """Back to the state the simulator started with (scenario, settings, clock, no faults)."""
        scenario, rate, auto, latency, oncalls_rate = self._startup
        self.clock_offset = 0.0
        self.rate = RateLimit(per_minute=rate, oncalls_per_minute=oncalls_rate)
        self.auto_approve = auto
        self.latency_ms = latency
        self.auth_error_mode = DEFAULT_AUTH_ERROR_MODE
        self.oidc_issuer = DEFAULT_OIDC_ISSUER
        self.echo_state = DEFAULT_ECHO_STATE
        self.access_ttl, self.refresh_ttl, self.code_ttl = ACCESS_TTL, REFRESH_TTL, CODE_TTL
        self.refresh_window = REFRESH_WINDOW
        self.faults.clear()
        self.load(scenario)

    def new_id(self, prefix: str = "P") -> str:
        return f"{prefix}SIM{next(self._id_seq):03d}"

    # ------------------------------------------------------------------ stats

    def reset_stats(self) -> None:
        self.by_endpoint: Counter[str] = Counter()
        self.by_path: Counter[str] = Counter()
        self.by_credential: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=1000)

    def stats(self) -> dict[str, Any]:
        return {
            "total": sum(self.by_endpoint.values()),
            "by_endpoint": dict(self.by_endpoint),
            "by_path": dict(self.by_path),
            "by_credential": dict(self.by_credential),
            "by_status": dict(self.by_status),
        }

    # ------------------------------------------------------------------ rate limiting

    def take(self, bucket: str, limit: int | None = None) -> tuple[bool, int, int]:
        """Consume one request from `bucket`: (allowed, remaining, seconds until reset).

        Fixed one-minute windows starting at a bucket's first request, on the virtual clock so a
        test can advance time instead of sleeping. `limit` defaults to the per-credential one.
        """
        per_minute = self.rate.per_minute if limit is None else limit
        now = self.now().timestamp()
        state = self.buckets.get(bucket)
        if state is None or now - state[0] >= 60:
            state = [now, 0.0]
            self.buckets[bucket] = state
        reset = max(1, int(60 - (now - state[0]) + 0.999))
        if state[1] >= per_minute:
            return False, 0, reset
        state[1] += 1
        return True, int(per_minute - state[1]), reset

    # ------------------------------------------------------------------ faults

    def add_fault(self, spec: dict[str, Any]) -> FaultRule:
        kind = spec.get("kind")
        if kind not in FaultRule.KINDS:
            raise ValueError(f"kind must be one of {FaultRule.KINDS}")
        allowed = set(FaultRule.__dataclass_fields__) - {"id", "hits"}
        extra = set(spec) - allowed
        if extra:
            raise ValueError(f"unknown fault field(s) {sorted(extra)}")
        rule = FaultRule(**spec)
        rule.query = {str(k): str(v) for k, v in (rule.query or {}).items()}
        if not 0.0 <= rule.probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        rule.id = next(self._fault_ids)
        self.faults.append(rule)
        return rule

    def matching_faults(
        self, method: str, path: str, query: dict[str, list[str]]
    ) -> list[FaultRule]:
        hits: list[FaultRule] = []
        for rule in self.faults:
            if rule.matches(method, path, query) and (
                rule.probability >= 1.0 or self.rng.random() < rule.probability
            ):
                rule.hits += 1
                hits.append(rule)
        return hits

    # ------------------------------------------------------------------ tokens

    def issue_tokens(
        self,
        app: OAuthApp,
        user_id: str,
        scopes: list[str],
        grant_id: str | None = None,
        authorized_at: datetime | None = None,
    ) -> tuple[Token, Token]:
        now = self.now()
        grant = grant_id or str(uuid.uuid4())
        since = authorized_at or now
        access = Token(
            "pdsim_at_" + secrets.token_urlsafe(24),
            "access",
            app,
            user_id,
            scopes,
            now,
            now + timedelta(seconds=self.access_ttl),
            grant,
            since,
        )
        refresh = Token(
            "pdsim_rt_" + secrets.token_urlsafe(24),
            "refresh",
            app,
            user_id,
            scopes,
            now,
            now + timedelta(seconds=self.refresh_ttl),
            grant,
            since,
        )
        self.access_tokens[access.value] = access
        self.refresh_tokens[refresh.value] = refresh
        return access, refresh

    def select_tokens(self, sel: dict[str, Any]) -> list[Token]:
        """Tokens chosen by {"token"} | {"app": label} | {"account": id} | {"user_id"} (+"kind")."""
        kind = sel.get("kind", "all")
        pools: list[dict[str, Token]] = []
        if kind in ("access", "all"):
            pools.append(self.access_tokens)
        if kind in ("refresh", "all"):
            pools.append(self.refresh_tokens)
        if not pools:
            raise ValueError("kind must be access, refresh or all")
        if "token" in sel:
            return [p[sel["token"]] for p in pools if sel["token"] in p]
        if not any(k in sel for k in ("app", "account", "user_id")):
            raise ValueError("select tokens with 'token', 'app', 'account' or 'user_id'")
        out = []
        for pool in pools:
            for tok in pool.values():
                if "app" in sel and tok.app.label != sel["app"]:
                    continue
                if "account" in sel and tok.app.account_id != sel["account"]:
                    continue
                if "user_id" in sel and tok.user_id != sel["user_id"]:
                    continue
                out.append(tok)
        return out
