# The read deadline of an asyncio connection (server or client protocol).
from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["Deadline"]


class Deadline:
    """One timer per connection, moved only when a deadline comes sooner:
    most reads just push the deadline on, which costs no timer at all.
    ``expired`` is called once the latest deadline set has passed; the
    connection checks there whether it still waits."""

    def __init__(self, loop: asyncio.AbstractEventLoop, expired: Callable[[], None]) -> None:
        self.loop = loop
        self.expired = expired
        self.when = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_when = 0.0  # when the timer fires, if there is one

    def start(self, timeout: float) -> None:
        self.when = when = self.loop.time() + timeout
        if self.timer is None or self.timer_when > when:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_at(when, self._fire)
            self.timer_when = when

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _fire(self) -> None:
        if self.loop.time() < self.when:
            self.timer = self.loop.call_at(self.when, self._fire)
            self.timer_when = self.when
            return
        self.timer = None
        self.expired()
