"""What a line model's probabilities say: the symbols of the line, where each lies, and how sure
the model is of each and of the whole line. NumPy only, so the reader runs it without TensorFlow.

    from ctc import decoded_line, line_confidence
    symbols = decoded_line(probabilities)     # (frames, LINE_CLASSES) -> [Symbol(3, 4, 7, 5, 0.98), ...]
    sure = line_confidence(probabilities, symbols)   # train.py calibrates a threshold on it

Decoding is CTC's greedy one, as keras.ops.ctc_decode's: the likeliest class of each frame, runs of
one class merged, blanks dropped. A line is read right only if no symbol is wrong, none is missing
and none is extra, so its confidence is the least of its symbols' and of its gaps' sureness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data import BLANK, NUM_CLASSES


@dataclass(frozen=True)
class Symbol:
    symbol: int  # 0-9, or NOT_A_DIGIT_SYMBOL
    start: int  # its frames, start to stop (exclusive)
    stop: int
    peak: int  # the frame where it is likeliest
    confidence: float  # its probability there


def decoded_line(probabilities: np.ndarray) -> list[Symbol]:
    """The symbols greedy CTC decoding reads in one line's probabilities (frames, LINE_CLASSES),
    left to right."""
    best = probabilities.argmax(axis=1)
    edges = np.flatnonzero(np.diff(best)) + 1
    starts, stops = np.concatenate([[0], edges]), np.concatenate([edges, [len(best)]])
    symbols = []
    for start, stop in zip(starts, stops, strict=True):
        symbol = int(best[start])
        if symbol == BLANK:
            continue
        peak = start + int(probabilities[start:stop, symbol].argmax())
        symbols.append(Symbol(symbol, int(start), int(stop), peak, float(probabilities[peak, symbol])))
    return symbols


def gap_sureness(probabilities: np.ndarray, symbols: list[Symbol]) -> np.ndarray:
    """For each frame outside the symbols, the probability that it adds no symbol: blank, or more of
    the symbol on either side of its gap (a frame that is half a 3's edge still reads one 3)."""
    sureness = np.ones(len(probabilities))
    neighbours = [None, *[symbol.symbol for symbol in symbols], None]
    bounds = [0, *[edge for symbol in symbols for edge in (symbol.start, symbol.stop)], len(probabilities)]
    for index in range(len(symbols) + 1):
        start, stop = bounds[2 * index], bounds[2 * index + 1]
        if start == stop:
            continue
        gap = probabilities[start:stop, BLANK].astype(np.float64)
        for side in {neighbours[index], neighbours[index + 1]} - {None}:
            gap = gap + probabilities[start:stop, side]
        sureness[start:stop] = np.minimum(gap, 1.0)
    return sureness


def line_confidence(probabilities: np.ndarray, symbols: list[Symbol]) -> float:
    """How sure the model is of the whole line: the least of its symbols' confidences and of its
    gaps' sureness that they hold no symbol."""
    least_gap = float(gap_sureness(probabilities, symbols).min()) if len(probabilities) else 1.0
    return min([least_gap, *[symbol.confidence for symbol in symbols]])


def likeliest_digits(row: np.ndarray, top: int) -> list[dict]:
    """A frame's `top` likeliest digits (not blank, not "not a digit"), as the classifier lists them."""
    ranked = np.argsort(-row[:NUM_CLASSES])[:top]
    return [{"digit": int(digit), "probability": float(row[digit])} for digit in ranked]
