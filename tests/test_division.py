"""reader/division.py: the ways a written number may divide into digits."""

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from conftest import ZERO_TOUCHING_A_ONE, encoded, written
from reader.division import MIN_NUMBER_HEIGHT, OVERLAP, number_layouts, overlapping_groups
from reader.page import ImageError, page_ink, read_image

ONE = [[(60, 40), (60, 160)]]
SEVEN = [[(150, 40), (230, 40), (180, 160)]]
FIVE_WITH_CAP_APART = [
    [(300, 90), (290, 40 + 60)],
    [(300, 95), (350, 100), (350, 150), (295, 160)],
    [(305, 40), (355, 40)],
]


def divisions(page):
    """Each group of a written number's ink, with its candidate layouts as lists of box lefts."""
    layouts = number_layouts(page_ink(page))
    return layouts, [[[part.left for part in layout] for layout in group] for group in layouts.groups]


def test_a_number_divides_into_its_digits_left_to_right():
    _, groups = divisions(written(SEVEN, ONE, FIVE_WITH_CAP_APART))
    assert len(groups) == 3
    assert all(len(group) == 1 and len(group[0]) == 1 for group in groups)  # nothing else to try
    lefts = [group[0][0] for group in groups]
    assert lefts == sorted(lefts) and lefts[0] < 60  # the 1 first, whatever order it was drawn in


def test_a_piece_above_another_is_part_of_the_same_digit():
    _, groups = divisions(written(FIVE_WITH_CAP_APART))
    assert len(groups) == 1 and len(groups[0]) == 1  # the cap alone is too short to be a digit


def test_digits_that_touch_are_tried_whole_and_cut_where_the_ink_is_thinnest():
    _, groups = divisions(written(*ZERO_TOUCHING_A_ONE))
    assert len(groups) == 1
    assert len(groups[0][0]) == 1  # whole first
    cuts = [layout[1] for layout in groups[0] if len(layout) == 2]
    assert len(cuts) == 1 and 126 <= cuts[0] <= 194  # along the thin join, not through the 0 or 1
    narrow = written([[(60, 40), (60, 160)], [(60, 100), (90, 100)], [(90, 40), (90, 160)]])
    assert [len(layout) for layout in divisions(narrow)[1][0]] == [1]  # too narrow for two digits


def test_a_long_run_of_touching_digits_is_tried_as_each_of_them():
    bars = [[(40 + 60 * i, 40), (40 + 60 * i, 160)] for i in range(7)]
    joins = [[(40 + 60 * i, 100), (100 + 60 * i, 100)] for i in range(6)]
    _, groups = divisions(written(bars + joins))
    assert 7 in [len(layout) for layout in groups[0]]


def test_a_mark_too_short_for_a_digit_is_still_read_whole():
    _, groups = divisions(written(ONE, [[(120, 100), (160, 100)]], [[(250, 40), (250, 160)]]))
    assert [[len(layout) for layout in group] for group in groups] == [[1], [1], [1]]


def dashes(pen: int) -> Image.Image:
    """Three dashes drawn `pen` px thick on a 4000 px page, which is read shrunk to 1024 across:
    about pen / 4 + 1 px tall as read."""
    return written(
        *[[[(300 + 400 * i, 500), (316 + 400 * i, 500)]] for i in range(3)], size=(4000, 1000), width=pen
    )


@pytest.mark.parametrize("pen", [2, 8, 16])
def test_a_number_too_small_to_read_is_refused_naming_its_height(pen):
    with pytest.raises(ImageError, match=r"the number is (\d+) px tall as read") as refused:
        number_layouts(page_ink(read_image(encoded(dashes(pen)))))
    assert int(re.search(r"is (\d+) px", str(refused.value)).group(1)) < MIN_NUMBER_HEIGHT


def test_a_number_just_tall_enough_is_divided():
    assert len(number_layouts(page_ink(read_image(encoded(dashes(4 * MIN_NUMBER_HEIGHT - 4))))).groups) == 3


def speck_page(height: int, width: int) -> np.ndarray:
    """Rows of 3 px dashes, every other row shifted: tens of thousands of pieces that all overlap
    (the review's 2 KB image that held a reading slot for minutes)."""
    page = np.full((height, width), 255, np.uint8)
    for row in range(2, height - 2, 2):
        for column in range(2 + (row // 2) % 4, width - 4, 4):
            page[row, column : column + 3] = 0
    return page


def test_a_page_of_specks_is_refused_before_it_is_divided():
    with pytest.raises(ImageError, match=r"found [\d,]+ separate pieces of ink; a number of at most 12"):
        number_layouts(page_ink(read_image(encoded(Image.fromarray(speck_page(512, 1024))))))


def quadratic_groups(spans):
    """The grouping as first written, recomputing each group's reach at every piece: the reference."""
    groups = []
    for left, right, label in spans:
        last = groups[-1] if groups else None
        reach = max(span[1] for span in last) if last else 0
        width = min(right - left, reach - min(span[0] for span in last)) if last else 0
        if last and left < reach - OVERLAP * width:
            last.append((left, right, label))
        else:
            groups.append([(left, right, label)])
    return groups


@given(st.lists(st.tuples(st.integers(0, 200), st.integers(1, 60)), max_size=40))
def test_pieces_are_grouped_in_one_pass_as_by_their_whole_reach(pieces):
    spans = sorted((left, left + width, label) for label, (left, width) in enumerate(pieces, start=1))
    assert overlapping_groups(spans) == quadratic_groups(spans)


def test_digits_written_into_each_other_are_tried_apart_each_with_its_own_ink():
    seven = [(40, 40), (130, 40), (80, 160)]
    one_under_its_bar = [(70, 55), (70, 125)]  # inside the 7's columns, not touching it
    layouts, _ = divisions(written([seven], [one_under_its_bar]))
    assert len(layouts.groups) == 1
    apart = [
        layout for layout in layouts.groups[0] if len(layout) == 2 and layout[0].pieces != layout[1].pieces
    ]
    assert len(apart) == 1
    seven, one = apart[0]
    assert layouts.digit(seven)[55:125, 70 - seven.left].max() == 0  # the 1's ink is not in the 7
    assert layouts.digit(one)[55:125].max() == 255


def test_more_than_twelve_marks_is_an_error():
    many = written(*[[[(20 + 45 * i, 40), (20 + 45 * i, 160)]] for i in range(14)], size=(700, 200), width=6)
    with pytest.raises(ImageError, match="found 14 separate marks; a number of at most 12 digits"):
        number_layouts(page_ink(many))
