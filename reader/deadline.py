"""A reading's deadline: the reader gives up on an image that takes too long, wherever it is.

    deadline = Deadline.after(READING_SECONDS)
    deadline.check()          # in every loop whose length the image decides: ReadingTimeout once past
    deadline.abandoned.set()  # from another thread: nobody waits for it any more (a client has gone)

Every step of reading is bounded in the size of the image; the deadline is the net under them, so
that no image, however made, holds a reading slot (serve.py) or a user (predict.py) for long, and
no reading goes on for a client that has gone.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

READING_SECONDS = 10.0  # a 12-digit number on a phone photo reads in well under a second


class ReadingTimeout(Exception):
    """An image that took longer to read than its deadline; the message says what to send instead."""


class ReadingAbandoned(ReadingTimeout):
    """A reading stopped because nobody waits for it any more."""


@dataclass(frozen=True)
class Deadline:
    at: float  # time.monotonic()'s reading when it passes
    seconds: float
    abandoned: threading.Event = field(default_factory=threading.Event)  # set: stop at the next check

    @classmethod
    def after(cls, seconds: float, abandoned: threading.Event | None = None) -> Deadline:
        return cls(time.monotonic() + seconds, seconds, abandoned or threading.Event())

    def check(self) -> None:
        if self.abandoned.is_set():
            raise ReadingAbandoned("the reading was dropped: nobody waits for it")
        if time.monotonic() > self.at:
            raise ReadingTimeout(
                f"reading it took over {self.seconds:g} s: send a smaller image, or one holding only "
                "the digit or number"
            )


NO_DEADLINE = Deadline(float("inf"), float("inf"))
