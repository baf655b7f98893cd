"""recipe/settings.py: the per-architecture defaults, settings files and the flags named after the fields."""

import argparse
import dataclasses

import pytest

from model import ModelConfig
from recipe import settings
from recipe.config import TrainConfig
from recipe.settings import ARCH_DEFAULTS, Settings, resolve


def test_nothing_given_is_the_users_design():
    default = resolve({})
    assert default == ARCH_DEFAULTS["mlp"]
    assert default.model.hidden == (1024, 512) and default.model.output_activation == "sigmoid"


def test_naming_an_architecture_brings_all_its_defaults():
    cnn = resolve({"model": {"arch": "cnn"}})
    assert cnn.model.hidden == (256,) and cnn.training.epochs == 22
    line = resolve({"model": {"arch": "line"}})
    assert line.model.output_activation == "softmax" and line.training == ARCH_DEFAULTS["line"].training


def test_given_values_override_the_architectures_defaults():
    given = resolve({"model": {"arch": "cnn", "hidden": [64, 32]}, "training": {"lr": 1, "limit": None}})
    assert given.model.hidden == (64, 32) and given.model.filters == ARCH_DEFAULTS["cnn"].model.filters
    assert given.training.lr == 1.0 and isinstance(given.training.lr, float)


def test_settings_round_trip_through_their_json_shape():
    original = Settings(
        ModelConfig(arch="cnn", hidden=(32,)), TrainConfig(epochs=3, limit=100, augment=False)
    )
    shape = original.as_dict()
    assert set(shape) == {"model", "training"} and shape["model"]["hidden"] == [32]
    assert resolve(shape) == original


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"model": {"depth": 3}}, "'depth' is not a model setting"),
        ({"training": {"dropout": 0.1}}, "'dropout' is not a training setting"),
        ({"model": {"arch": "rnn"}}, "arch must be one of mlp, cnn, line, got 'rnn'"),
        ({"model": {"arch": ["mlp"]}}, "arch must be a string, got ['mlp']"),
        ({"model": {"hidden": "wide"}}, "hidden must be a list of integers, got 'wide'"),
        ({"model": {"hidden": []}}, "hidden must be a list of integers, got []"),
        ({"model": {"dropout": 1.5}}, "dropout must be in [0, 1), got 1.5"),
        ({"training": {"epochs": 2.5}}, "epochs must be an integer, got 2.5"),
        ({"training": {"epochs": True}}, "epochs must be an integer, got True"),
        ({"training": {"augment": 1}}, "augment must be true or false, got 1"),
        ({"training": {"lr": "fast"}}, "lr must be a number, got 'fast'"),
        ({"training": {"lr": float("inf")}}, "lr must be a number above 0 and at most 10, got inf"),
        (  # each layer allowed, 64 million weights, but 200 MB of activations an image
            {"model": {"arch": "cnn", "filters": [65536], "kernel_size": 28, "hidden": [1]}},
            "batch_size 256 with these layers computes 16,441,875,200 values a step, over 1,000,000,000",
        ),
        (
            {"model": {"hidden": [1000] * 16}, "training": {"batch_size": 60000}},
            "batch_size 60000 with these layers computes 1,007,640,000 values a step",
        ),
    ],
)
def test_bad_settings_raise_value_errors_naming_them(overrides, message):
    with pytest.raises(ValueError) as error:
        resolve(overrides)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "cannot read"),
        ("[1, 2]", 'holds no "model" or "training" settings'),
        ('{"hidden": [512]}', 'holds no "model" or "training" settings'),
        ('{"model": [512]}', '"model" must be a JSON object of settings'),
    ],
)
def test_unreadable_settings_files_are_value_errors(tmp_path, content, message):
    path = tmp_path / "settings.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        settings.read_file(path)


def test_a_run_record_is_a_settings_file(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"created": "today", "model": {"arch": "cnn"}, "training": {"seed": 4}, "final": {}}')
    assert settings.read_file(path) == {"model": {"arch": "cnn"}, "training": {"seed": 4}}


def parser_with_flags(**options):
    parser = argparse.ArgumentParser()
    settings.add_flags(parser, **options)
    return parser


def test_every_field_is_a_flag_and_only_given_flags_override():
    parser = parser_with_flags()
    every_field = [
        field.name for config in (ModelConfig, TrainConfig) for field in dataclasses.fields(config)
    ]
    flags = {action.dest.split(".")[1] for action in parser._actions if "." in action.dest}
    assert flags == set(every_field)
    given = settings.given_flags(parser.parse_args(["--hidden", "8,4", "--no-augment", "--lr", "0.5"]))
    assert given == {"model": {"hidden": (8, 4)}, "training": {"augment": False, "lr": 0.5}}
    assert settings.given_flags(parser.parse_args([])) == {"model": {}, "training": {}}


def test_help_shows_each_architectures_default():
    helps = {action.dest: action.help for action in parser_with_flags()._actions}
    assert helps["model.hidden"].endswith("[mlp: 1024,512; cnn: 256; line: 128]")
    assert helps["training.epochs"].endswith("[mlp: 25; cnn: 22; line: 20]")
    assert helps["training.lr"].endswith("[mlp: 0.002; cnn: 0.002; line: 0.003]")
    assert helps["model.dropout"].endswith("[0.1]")
    assert helps["model.arch"].endswith("[mlp]") and helps["training.limit"].endswith("[all]")


def test_excluded_settings_have_no_flag():
    parser = parser_with_flags(exclude=("lr",))
    with pytest.raises(SystemExit):
        parser.parse_args(["--lr", "0.1"])


def test_flags_and_files_merge_with_later_winning():
    merged = settings.merged({"model": {"hidden": [1]}, "training": {"seed": 1}}, {"training": {"seed": 2}})
    assert merged == {"model": {"hidden": [1]}, "training": {"seed": 2}}
