"""Scenario files and the fleet generator, loaded in-process (no simulator server)."""

from __future__ import annotations

from pathlib import Path

from pagerduty_sim.generator import fleet, fleet_key, large_account
from pagerduty_sim.scenario import load_scenario


def test_yaml_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "accounts:\n- id: t\n  users:\n  - {id: PU1, name: One, email: one@t.example}\n"
        "api_keys:\n- {label: t-key, key: k1, account: t}\n"
    )
    sc = load_scenario(str(path))
    assert sc.name == "tiny"
    assert list(sc.accounts["t"].users) == ["PU1"]


def test_generator_is_predictable() -> None:
    # How long generation takes is a figure, not a test: bench/bench_sync_fleet.py prints it
    # ("scenario generated: ... s").
    sc = fleet(2000)
    assert len(sc.accounts) == 2000
    key = {k.label: k for k in sc.api_keys}["fleet-1999"]
    assert key.key == fleet_key(1999)
    assert key.account_id == "fleet-1999"
    assert len(sc.accounts["fleet-7"].users) == 50
    assert len(sc.accounts["fleet-7"].schedules) == 10
    big = large_account(n_users=10_000, n_schedules=1_000, seed=1)
    assert len(big.accounts["large"].users) == 10_000
    assert [u.email for u in big.accounts["large"].users.values()][:2] == [
        "user00000@large.example",
        "user00001@large.example",
    ]
