"""ground/outputs.py: everything the project writes into an output folder."""

import importlib
import json
import re

import matplotlib.image
import pytest
from matplotlib.figure import Figure

from ground import outputs
from ground.outputs import OutputError, atomic_path, keep_settings


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["metrics.json"]


def test_atomic_path_keeps_the_suffix_keras_and_matplotlib_need(tmp_path):
    with atomic_path(tmp_path / "model.keras") as temporary:
        assert temporary.suffix == ".keras" and temporary.parent == tmp_path
        temporary.write_text("x")
    assert (tmp_path / "model.keras").read_text() == "x"


def test_figures_are_pngs_at_the_one_dpi(tmp_path):
    figure = Figure(figsize=(4, 3))
    figure.subplots().plot([0, 1], [1, 0])
    outputs.save_figure(figure, tmp_path / "plot.png")
    image = matplotlib.image.imread(tmp_path / "plot.png")
    assert image.shape[:2] == (3 * outputs.DPI, 4 * outputs.DPI)


def test_settings_lock_refuses_other_settings_in_the_same_folder(tmp_path):
    lock = tmp_path / "settings.json"
    keep_settings(lock, {"epochs": 3, "hidden": (64,)}, tmp_path)
    keep_settings(lock, {"epochs": 3, "hidden": [64]}, tmp_path)  # as JSON gives it back: the same
    with pytest.raises(OutputError, match="holds work done with other settings.*--fresh"):
        keep_settings(lock, {"epochs": 4, "hidden": (64,)}, tmp_path)
    assert json.loads(lock.read_text()) == {"epochs": 3, "hidden": [64]}


def test_unwritable_folder_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot write to .*choose another --out"):
        outputs.check_writable(blocker / "run")


def test_run_record_names_the_libraries_that_made_it():
    record = outputs.run_record(epochs_run=3)
    assert record["epochs_run"] == 3 and record["created"].endswith("+00:00")
    assert {"python", "tensorflow", "keras", "numpy", "scipy", "matplotlib", "pillow", "scikit-learn"} == set(
        record["versions"]
    )


@pytest.mark.parametrize(
    "text, says",
    [
        ("[" * 100_000 + "]" * 100_000, "nests too deep to read"),
        ("[" * 65 + "]" * 65, "nests over 64 levels deep"),
        ("not json", "Expecting value"),
    ],
)
def test_json_read_back_is_refused_past_its_limits_as_a_value_error(tmp_path, text, says):
    path = tmp_path / "run.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=says):
        outputs.read_json(path)
    assert outputs.record_of(tmp_path / "model.keras") == {}  # a model beside it: no record


def test_json_over_its_size_is_refused_unread(tmp_path):
    path = tmp_path / "big.json"
    path.write_text("[" + "0," * 100 + "0]")
    with pytest.raises(ValueError, match="is over 100 bytes"):
        outputs.read_json(path, max_bytes=100)
    assert outputs.read_json(path, max_bytes=1000) == [0] * 101


def flag_helps(parser) -> dict[str, str]:
    """Each flag of `parser` and the help text its --help prints, lines joined."""
    helps, flag = {}, None
    for line in parser.format_help().splitlines():
        entry = re.match(r"  (-[-\w]+)[^ ]*(?: [^ ]+)*?(?:  +(.*))?$", line)
        if entry:
            flag = entry.group(1)
            helps[flag] = entry.group(2) or ""
        elif flag and line.startswith("    "):
            helps[flag] = f"{helps[flag]} {line.strip()}".strip()
        else:
            flag = None
    return helps


@pytest.mark.parametrize("script", ["train", "evaluate", "tune", "export", "predict", "serve"])
def test_every_flag_of_every_script_says_what_it_does_and_shows_its_default(script):
    helps = flag_helps(importlib.import_module(script).build_parser())
    assert len(helps) > 3
    for flag, text in helps.items():
        if flag != "-h":
            assert re.fullmatch(r"\w.* \[[^\]]+\]", text), f"{script}.py {flag}: {text!r}"
