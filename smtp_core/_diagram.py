# The state diagram, generated from the one table (docs/state-diagram.md is
# this function's output; a test keeps the two equal).
from __future__ import annotations

from ._state import TABLE, Greeting, Refusal, State, Step

__all__ = ["state_diagram", "state_document"]


def _name(kind: type) -> str:
    if kind is Greeting:
        return "greeting"
    return kind.__name__.upper() if kind.__name__ != "MessageEnd" else "end of content"


def state_diagram() -> str:
    """A Mermaid state diagram of every transition, and a table of refusals."""
    lines = ["```mermaid", "stateDiagram-v2", "    [*] --> GREETING"]
    refusals = []
    for state, row in TABLE.items():
        for kind, entry in row.items():
            if isinstance(entry, Refusal):
                refusals.append((state, kind, entry))
                continue
            assert isinstance(entry, Step)
            moves = [("accepted", entry.on_success), ("refused", entry.on_failure)]
            if entry.on_intermediate is not None:
                moves.append(("3yz", entry.on_intermediate))
            for outcome, target in moves:
                if target is not None and target is not state:
                    lines.append(f"    {state.name} --> {target.name}: {_name(kind)} {outcome}")
    lines += [f"    {State.CLOSED.name} --> [*]", "```", ""]
    lines += ["| state | command | refused with |", "| --- | --- | --- |"]
    for state, kind, refusal in refusals:
        reply = f"{refusal.code} {refusal.enhanced} {refusal.text}"
        lines.append(f"| {state.name} | {_name(kind)} | {reply} |")
    return "\n".join(lines) + "\n"


def state_document() -> str:
    """docs/state-diagram.md: a heading and ``state_diagram()``."""
    return (
        "# smtp-core: the state table\n\nGenerated from `smtp_core/_state.py` by "
        "`python -m smtp_core._diagram > docs/state-diagram.md`.\n\n" + state_diagram()
    )


if __name__ == "__main__":
    import sys

    sys.stdout.write(state_document())
