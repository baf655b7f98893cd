"""Dividing a number written on one line into the digits it may be made of, for the reader to choose.

    from reader.division import number_layouts
    layouts = number_layouts(page_ink(image))   # each group of ink with its candidate divisions
    layouts.digit(part)                          # the ink of one candidate digit, for data.mnist_style

The ink alone does not always say where one digit ends: digits touch or run into each other, and
a 5's cap or a broken 4 is a piece of its own. So every plausible division is listed here, and
reading.read_number reads them all and keeps the one the model is surest of.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice, product

import numpy as np
from scipy import ndimage

from data import INK_THRESHOLD, MAX_LINE_SYMBOLS
from reader.deadline import NO_DEADLINE, Deadline
from reader.page import EIGHT_NEIGHBOURS, NO_STROKE, WORK_SIDE, ImageError

MAX_DIGITS = MAX_LINE_SYMBOLS  # in one written number, read by division or by the line model
OVERLAP = 0.5  # pieces overlapping by this share of the narrower one's width are tried as one digit
# Touching ink is tried as up to one digit per this share of the number's height of its width: a
# little under MNIST's narrowest usual digits but for 1s (2s and 0s average 0.9, 9s 0.7).
MIN_DIGIT_WIDTH = 0.35
MIN_DIGIT_HEIGHT = 0.5  # of the number's height: a shorter part is a piece of a digit, not a digit
# Every division of a group's pieces is tried up to this many pieces (2^5 = 32 divisions); a group
# of more, rare outside scribbles, is tried as one run of touching ink.
MAX_GROUP_PIECES = 6
MAX_LAYOUTS = 256  # tried per group, the simplest first: bounds the reading of a scribble
# A number of 12 digits written in broken strokes has a few dozen pieces; past this many, the
# image is specks or texture, refused before any work that grows with the pieces.
MAX_PIECES = 500
# px tall, as read: under this a "number" is a dash or a line of dots, and nothing can be read of it
# (MNIST's digits are 20 px; scans of 8 px read well, bench/handwriting.py).
MIN_NUMBER_HEIGHT = 6


@dataclass(frozen=True)
class Part:
    """A stretch of a written number that may be one digit: some of its pieces of ink (their labels
    in `NumberLayouts.owners`), within the columns left to right."""

    pieces: frozenset[int]
    left: int
    right: int


@dataclass
class NumberLayouts:
    """The ways a number written on one line may divide into digits, for a reader to choose from.

    `owners` gives every pixel the label of the piece of ink nearest to it, so a part holds its
    pieces' anti-aliased edges too. `groups` are the pieces that overlap horizontally (a 5's cap, a
    broken 4, digits written into each other) left to right, each with its candidate layouts: lists
    of parts left to right.
    """

    ink: np.ndarray
    owners: np.ndarray
    pieces: int  # labelled 1 to pieces in `owners`
    groups: list[list[list[Part]]]

    def digit(self, part: Part) -> np.ndarray:
        """The ink of one part alone, in its columns (the page's full height)."""
        columns = slice(part.left, part.right)
        mine = np.zeros(self.pieces + 1, bool)  # by label: a lookup, not a search of every pixel's
        mine[list(part.pieces)] = True
        return np.where(mine[self.owners[:, columns]], self.ink[:, columns], 0.0)

    def box(self, part: Part) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the part's ink; top == bottom if it holds none (a cut
        through empty columns, which `number_layouts` drops)."""
        rows = np.flatnonzero((self.digit(part) >= INK_THRESHOLD * 255).any(axis=1))
        if not len(rows):
            return part.left, 0, part.right, 0
        return part.left, int(rows[0]), part.right, int(rows[-1]) + 1


def number_layouts(ink: np.ndarray, deadline: Deadline = NO_DEADLINE) -> NumberLayouts:
    """Every plausible way of dividing the number in `ink` into digits: within each group of
    overlapping pieces, its pieces split between digits where they follow each other, and any run of
    them wide enough for several digits cut at the columns holding least ink (digits that touch).
    A part that is not half as tall as the number's pieces (a 5's cap, a 1's flag) is no digit.
    Raises ReadingTimeout past `deadline`."""
    marks = ink >= INK_THRESHOLD * 255
    labels, count = ndimage.label(marks, structure=EIGHT_NEIGHBOURS)
    if not count:
        raise ImageError(NO_STROKE)
    if count > MAX_PIECES:  # before any work that grows with the pieces
        raise too_many(f"{count:,} separate pieces of ink")
    boxes = ndimage.find_objects(labels)  # each piece's rows and columns, by label - 1
    spans = sorted((found[1].start, found[1].stop, label) for label, found in enumerate(boxes, start=1))
    groups = overlapping_groups(spans)
    if len(groups) > MAX_DIGITS:
        raise too_many(f"{len(groups)} separate marks")
    rows = [found[0] for found in boxes]
    height = float(
        np.median(
            [
                max(rows[label - 1].stop for *_, label in group)
                - min(rows[label - 1].start for *_, label in group)
                for group in groups
            ]
        )
    )
    if height < MIN_NUMBER_HEIGHT:
        raise ImageError(
            f"the number is {height:.0f} px tall as read (images are read at most {WORK_SIDE} px across): "
            f"crop the image closer to it, or write it larger"
        )
    _, (nearest_rows, nearest_columns) = ndimage.distance_transform_edt(~marks, return_indices=True)
    layouts = NumberLayouts(ink, labels[nearest_rows, nearest_columns], count, [])
    run_options: dict[tuple, list[list[Part]]] = {}  # a run recurs in many divisions of its group

    def options_of(run: list[tuple[int, int, int]]) -> list[list[Part]]:
        if tuple(run) not in run_options:
            run_options[tuple(run)] = run_layouts(layouts, run, height)
        return run_options[tuple(run)]

    for group in groups:
        deadline.check()
        options = (
            [part for parts in layout for part in parts]
            for runs in contiguous_runs(group)
            for layout in product(*map(options_of, runs))
        )
        whole = [[Part(frozenset(label for *_, label in group), group[0][0], max(span[1] for span in group))]]
        layouts.groups.append(list(islice(options, MAX_LAYOUTS)) or whole)
    return layouts


def overlapping_groups(spans: list[tuple[int, int, int]]) -> list[list[tuple[int, int, int]]]:
    """Pieces (left, right, label), sorted by their left edge, gathered into groups of pieces that
    overlap horizontally, left to right: a piece joins the group before it when it starts inside
    its reach by more than OVERLAP of the narrower's width. One pass, each piece looked at once."""
    groups: list[list[tuple[int, int, int]]] = []
    start = reach = 0  # the current group's left edge and right reach
    for left, right, label in spans:
        if groups and left < reach - OVERLAP * min(right - left, reach - start):
            groups[-1].append((left, right, label))
            reach = max(reach, right)
        else:
            groups.append([(left, right, label)])
            start, reach = left, right
    return groups


def too_many(found: str) -> ImageError:
    return ImageError(f"found {found}; a number of at most {MAX_DIGITS} digits expected")


def contiguous_runs(group: list[tuple[int, int, int]]) -> list[list[list[tuple[int, int, int]]]]:
    """The ways to divide a group's pieces (left, right, label), in order, into runs of neighbours:
    all together and all apart first, then by how many runs."""
    if len(group) > MAX_GROUP_PIECES:  # too many to try each division: the group as one run
        return [[group]]
    divisions = []
    for cuts in product((False, True), repeat=len(group) - 1):
        runs, run = [], [group[0]]
        for piece, cut in zip(group[1:], cuts, strict=True):
            if cut:
                runs.append(run)
                run = []
            run.append(piece)
        divisions.append([*runs, run])
    return sorted(divisions, key=lambda runs: (1 < len(runs) < len(group), len(runs)))


def run_layouts(layouts: NumberLayouts, run: list[tuple[int, int, int]], height: float) -> list[list[Part]]:
    """A run of pieces as one digit or as several touching ones cut at their thinnest columns: those
    whose every part is a digit's height, if any."""
    pieces = frozenset(label for _, _, label in run)
    left, right = min(piece[0] for piece in run), max(piece[1] for piece in run)
    width = right - left
    whole = Part(pieces, left, right)
    column_ink = layouts.digit(whole).sum(axis=0)
    options = []
    for count in range(1, max(1, min(MAX_DIGITS, int(width / (MIN_DIGIT_WIDTH * height)))) + 1):
        cuts = []
        for index in range(1, count):  # near each expected boundary, the thinnest column
            expected = index * width / count
            low, high = int(expected - width / (3 * count)), int(expected + width / (3 * count))
            cuts.append(low + int(np.argmin(column_ink[low : max(high, low + 1)])))
        edges = [0, *cuts, width]
        parts = [
            Part(pieces, left + start, left + end) for start, end in zip(edges[:-1], edges[1:], strict=True)
        ]
        if all(bottom - top >= MIN_DIGIT_HEIGHT * height for _, top, _, bottom in map(layouts.box, parts)):
            options.append(parts)
    return options
