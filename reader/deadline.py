"""A reading's deadline: the reader gives up on an image that takes too long, wherever it is.

    deadline = Deadline.after(READING_SECONDS)
    deadline.check()          # in every loop whose length the image decides: ReadingTimeout once past

Every step of reading is bounded in the size of the image; the deadline is the net under them, so
that no image, however made, holds a reading slot (serve.py) or a user (predict.py) for long.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

READING_SECONDS = 10.0  # a 12-digit number on a phone photo reads in well under a second


class ReadingTimeout(Exception):
    """An image that took longer to read than its deadline; the message says what to send instead."""


@dataclass(frozen=True)
class Deadline:
    at: float  # time.monotonic()'s reading when it passes
    seconds: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds, seconds)

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise ReadingTimeout(
                f"reading it took over {self.seconds:g} s: send a smaller image, or one holding only "
                "the digit or number"
            )


NO_DEADLINE = Deadline(float("inf"), float("inf"))
