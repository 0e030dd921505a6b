"""axe-core in the browser tests: a page state passes with no serious or critical violation.

axe-core's JavaScript comes inside the PyPI package ``axe-playwright-python`` (installed by the
``[test]`` extra), so the check needs no network and no npm: its ``axe.min.js`` is injected into
the page Playwright already drives (``page.evaluate``), and ``axe.run`` reports what it finds.
"""

from __future__ import annotations

from typing import Any

BLOCKING = ("serious", "critical")


RULES = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"],
    },
    "resultTypes": ["violations"],
}
# One evaluation: axe's verdict and the connection state it was given (a page that refreshes
# itself may have moved on; a reload in the middle destroys the evaluation and it is tried again).
RUN = """async (rules) => {
  const results = await axe.run(document, rules);
  const block = document.querySelector("#connection");
  return {violations: results.violations, status: block ? block.dataset.status : null};
}"""


def violations(page: Any) -> tuple[list[dict[str, Any]], str | None]:
    """axe-core's violations of WCAG 2.x A/AA and its best practices on the page as it is, and
    the connection state (``#connection``'s ``data-status``) they were found in."""
    from axe_playwright_python.base import AXE_SCRIPT
    from playwright.sync_api import Error

    for attempt in range(3):
        try:
            page.wait_for_load_state()
            page.evaluate(AXE_SCRIPT)
            found: dict[str, Any] = page.evaluate(RUN, RULES)
            return found["violations"], found["status"]
        except Error as exc:
            if "context was destroyed" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def describe(found: list[dict[str, Any]]) -> str:
    lines = []
    for v in found:
        targets = ", ".join(str(n.get("target")) for n in v["nodes"][:4])
        lines.append(f"{v['id']} ({v['impact']}): {v['help']} — {targets}")
    return "\n".join(lines)


def assert_accessible(page: Any, state: str, status: str | None = None) -> None:
    """No serious or critical axe-core violation in this state of the page (and, given
    ``status``, the connection was in that state when axe looked)."""
    found, seen = violations(page)
    blocking = [v for v in found if v.get("impact") in BLOCKING]
    assert not blocking, f"axe-core, state {state!r}:\n{describe(blocking)}"
    if status is not None:
        assert seen == status, f"axe-core checked {seen!r}, not {status!r}"
