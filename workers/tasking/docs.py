"""The task tables of docs/tasks.md, rendered from the contract.

``python -m workers.tasking.docs`` prints them; paste the output between the markers in
docs/tasks.md (a test fails while the two differ).
"""

from __future__ import annotations

from workers.tasking.contract import TASKS, TaskSpec
from workers.tasking.outcomes import REFUSED, RESULT_WORDS, SENDERS

# --- the docs ----------------------------------------------------------------------------------

DOC_BEGIN = "<!-- task table: generated from workers/tasking/contract.py -->"
DOC_END = "<!-- end of task table -->"


def _retries(spec: TaskSpec) -> str:
    policy = spec.retry_policy
    if policy is None:
        return f"none ({spec.no_retry_because})" if spec.no_retry_because else "none"
    note = f" ({spec.retries_note})" if spec.retries_note else ""
    return f"{spec.max_retries}{note}: {policy.describe()}"


def _kwargs(spec: TaskSpec) -> str:
    text = ", ".join(k.signature() for k in spec.kwargs) or "—"
    if spec.beat is not None:
        # Beat sends no arguments; a task beat fires may still take some (fan-out shards).
        return (
            f"{text} (beat, {spec.beat.describe})"
            if spec.kwargs
            else f"— (beat, {spec.beat.describe})"
        )
    return f"{text} {spec.kwargs_note}".strip()


def render_task_tables() -> str:
    """The task table and the argument table of docs/tasks.md, between their markers."""
    lines = [
        DOC_BEGIN,
        "",
        "| name | queue | kwargs | result | limits (soft/hard) | retries |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for spec in TASKS:
        name = f"`{spec.name}`" + (" (deprecated)" if spec.deprecated else "")
        lines.append(
            f"| {name} | {spec.queue} | {_kwargs(spec).replace('|', chr(92) + '|')} | "
            f"{spec.result} | {spec.soft_time_limit} s / {spec.time_limit} s | {_retries(spec)} |"
        )
    lines += [
        "",
        "| task | argument | type | default | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for spec in TASKS:
        for kwarg in spec.kwargs:
            default = "required" if kwarg.required else f"`{kwarg.default!r}`".replace("'", '"')
            lines.append(
                f"| `{spec.name}` | `{kwarg.name}` | `{kwarg.type.replace('|', chr(92) + '|')}` | "
                f"{default} | {kwarg.meaning} |"
            )
    lines += ["", *_words_table(), "", DOC_END]
    return "\n".join(lines)


def _words_table() -> list[str]:
    """Who sends each task, and every word its result can carry."""
    lines = ["| task | who sends it |", "| --- | --- |"]
    lines += [f"| `{spec.name}` | {SENDERS[spec.name]} |" for spec in TASKS]
    lines += ["", "| task | result field | word | meaning |", "| --- | --- | --- | --- |"]
    for spec in TASKS:
        field, words = RESULT_WORDS.get(spec.name, ("", ()))
        lines += [f"| `{spec.name}` | `{field}` | `{w.word}` | {w.meaning} |" for w in words]
    lines.append(f"| any task | `status` | `{REFUSED.word}` | {REFUSED.meaning} |")
    return lines


if __name__ == "__main__":
    print(render_task_tables())
