"""The line composer makes the lines it says it makes, and CTC's loss and decoding read them."""

import numpy as np
import pytest

from data import BLANK, FRAME_WIDTH, INK_THRESHOLD, LINE_CLASSES, LINE_HEIGHT, MAX_LINE_SYMBOLS
from recipe.lines import NOT_A_DIGIT, PADDING, WIDTH_STEP, LineAccuracy, LineComposer, ctc_loss, greedy_labels


@pytest.fixture(scope="module")
def composer(mnist):
    return LineComposer.of(mnist.x_train[:2000], mnist.y_train[:2000], seed=0)


def ink_columns(image: np.ndarray) -> np.ndarray:
    return np.flatnonzero((image >= INK_THRESHOLD * 255).any(axis=0))


def test_composer_labels_match_the_ink_left_to_right(composer):
    rng = np.random.default_rng(3)
    for _ in range(100):
        line = composer.line(rng)
        assert len(line.spans) == len(line.labels)
        centres = [(left + right) / 2 for left, right in line.spans]
        assert centres == sorted(centres) and len(set(centres)) == len(centres)
        inked = ink_columns(line.image)
        for left, right in line.spans:  # every symbol has ink where the composer says
            assert ((inked >= left) & (inked < right)).any()
        covered = np.zeros(line.image.shape[1], bool)
        for left, right in line.spans:  # and there is no ink where no symbol is (1 px of resampling)
            covered[max(0, left - 1) : right + 1] = True
        assert covered[inked].all()


def test_composed_lines_hold_1_to_12_symbols_at_line_height(composer):
    rng = np.random.default_rng(4)
    lines = [composer.line(rng) for _ in range(300)]
    lengths = {len(line.labels) for line in lines}
    assert min(lengths) == 1 and max(lengths) == MAX_LINE_SYMBOLS
    assert {line.image.shape[0] for line in lines} == {LINE_HEIGHT}
    assert all(line.image.dtype == np.uint8 for line in lines)


def test_digits_keep_their_labels_and_marks_read_as_not_a_digit(mnist):
    sevens = mnist.x_train[:3000][mnist.y_train[:3000] == 7]
    marked = LineComposer.of(sevens, np.full(len(sevens), 7), seed=0, mark_share=0.5)
    labels = [label for _ in range(100) for label in marked.line(np.random.default_rng(_)).labels]
    assert set(labels) == {7, NOT_A_DIGIT}
    plain = LineComposer.of(sevens, np.full(len(sevens), 7), seed=0, mark_share=0.0)
    assert {label for seed in range(50) for label in plain.line(np.random.default_rng(seed)).labels} == {7}


def test_a_line_has_a_frame_for_every_symbol_and_blank_between(composer):
    rng = np.random.default_rng(5)
    for _ in range(200):
        line = composer.line(rng)
        assert line.image.shape[1] >= FRAME_WIDTH * (2 * len(line.labels) + 1)


def test_the_same_seed_composes_the_same_lines(mnist):
    first = LineComposer.of(mnist.x_train[:500], mnist.y_train[:500], seed=1)
    again = LineComposer.of(mnist.x_train[:500], mnist.y_train[:500], seed=1)
    x1, y1 = first.batch(np.random.default_rng([1, 7]), 8)
    x2, y2 = again.batch(np.random.default_rng([1, 7]), 8)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)


def test_a_batch_is_padded_to_a_width_step_and_its_labels_with_padding(composer):
    x, y = composer.batch(np.random.default_rng(6), 16)
    assert x.dtype == np.float32 and x.shape[:2] == (16, LINE_HEIGHT) and x.shape[2] % WIDTH_STEP == 0
    assert 0 <= x.min() and x.max() <= 1
    assert y.shape == (16, MAX_LINE_SYMBOLS)
    for row in y:
        length = np.count_nonzero(row != PADDING)
        assert (row[:length] >= 0).all() and (row[length:] == PADDING).all()


def frames_spelling(symbols: list[int], frames: int = 16) -> np.ndarray:
    """Probabilities (frames, LINE_CLASSES) sure of each symbol in turn, blanks between and after."""
    path = [step for symbol in symbols for step in (symbol, BLANK)]
    path += [BLANK] * (frames - len(path))
    return np.eye(LINE_CLASSES, dtype=np.float32)[path] * 0.98 + 0.02 / LINE_CLASSES


def test_ctc_decoding_merges_repeats_and_drops_blanks():
    probabilities = frames_spelling([3, 3, NOT_A_DIGIT, 1])[None]
    probabilities[0, 1] = probabilities[0, 0]  # 3 held over two frames is one 3
    decoded = np.asarray(greedy_labels(probabilities))[0]
    assert decoded[:3].tolist() == [3, NOT_A_DIGIT, 1] and (decoded[3:] == -1).all()


def test_ctc_loss_is_low_for_the_spelled_line_and_high_for_another():
    probabilities = np.stack([frames_spelling([4, 2]), frames_spelling([4, 2])])
    labels = np.full((2, MAX_LINE_SYMBOLS), PADDING, np.float32)
    labels[0, :2] = [4, 2]
    labels[1, :2] = [2, 4]
    right, wrong = np.asarray(ctc_loss(labels, probabilities))
    assert right < 0.5 < 5 < wrong


def test_line_accuracy_counts_only_whole_lines_read_right():
    probabilities = np.stack([frames_spelling([1, 2, 3]), frames_spelling([1, 2])])
    labels = np.full((2, MAX_LINE_SYMBOLS), PADDING, np.float32)
    labels[:, :3] = [1, 2, 3]  # the second line misses its 3
    accuracy = LineAccuracy()
    accuracy.update_state(labels, probabilities)
    assert float(accuracy.result()) == 0.5
