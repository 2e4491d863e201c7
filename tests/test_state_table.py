"""The state table is complete, and the diagram in docs/ is generated from it."""

from __future__ import annotations

import typing
from pathlib import Path

from smtp_core import Command, State
from smtp_core._diagram import state_document
from smtp_core._state import TABLE, Refusal, Step

DIAGRAM = Path(__file__).resolve().parent.parent / "docs" / "state-diagram.md"

# States in which the server reads command lines, and the lines that are not
# commands there (SASL responses only follow a 334).
COMMAND_STATES = [
    State.REFUSED,
    State.READY,
    State.GREETED,
    State.IN_TRANSACTION,
    State.HAS_RECIPIENTS,
    State.IN_CHUNKING,
    State.CHUNKING_FAILED,
]
SASL_ONLY = {"AuthResponse", "AuthCancel"}


def commands() -> list[type]:
    return list(typing.get_args(Command))


def test_every_command_is_a_transition_or_a_refusal_in_every_command_state():
    """DESIGN: each (state, command) pair is decided in the table, nowhere else."""
    for state in COMMAND_STATES:
        for kind in commands():
            if kind.__name__ in SASL_ONLY:
                continue
            entry = TABLE[state].get(kind)
            assert isinstance(entry, (Step, Refusal)), (state, kind.__name__)


def test_states_without_commands_take_none():
    """In GREETING, IN_MESSAGE, AUTH_EXCHANGE, TLS_HANDSHAKE and CLOSED no
    command line is read, so the table holds no command there, but the SASL
    responses in AUTH_EXCHANGE."""
    for state in (State.GREETING, State.IN_MESSAGE, State.TLS_HANDSHAKE, State.CLOSED):
        assert not any(kind in TABLE[state] for kind in commands()), state
    assert {kind.__name__ for kind in TABLE[State.AUTH_EXCHANGE]} == SASL_ONLY


def test_every_state_is_reachable_from_greeting():
    reached = {State.GREETING}
    frontier = [State.GREETING]
    while frontier:
        state = frontier.pop()
        for entry in TABLE[state].values():
            if isinstance(entry, Step):
                for target in (entry.on_success, entry.on_failure, entry.on_intermediate):
                    if target is not None and target not in reached:
                        reached.add(target)
                        frontier.append(target)
    # TLS_HANDSHAKE leads to READY through tls_started(), outside the table.
    assert reached == set(State), set(State) - reached


def test_the_diagram_in_docs_is_the_table():
    assert DIAGRAM.read_text(encoding="utf-8") == state_document()
