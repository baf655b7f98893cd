"""ground/quiet_tensorflow.py: TensorFlow's C++ start-up notices are held back; its warnings and
errors are not; oneDNN is on for x86 CPUs unless the user says otherwise."""

import platform

import pytest

from conftest import run_script
from ground.quiet_tensorflow import (
    INTRA_OP_THREADS,
    ONEDNN,
    X86,
    intra_op_threads,
    usable_cores,
    with_onednn_default,
    without_notices,
)

IMPORT = (
    "from ground.quiet_tensorflow import import_tensorflow_quietly; "
    "import_tensorflow_quietly(); import keras; print('ready')"
)


# oneDNN turned on by hand, so its start-up notice comes on any CPU (on one that is not x86,
# TensorFlow may leave it off, and then says nothing of it).
ONEDNN_ON = {"TF_ENABLE_ONEDNN_OPTS": "1"}


@pytest.mark.slow
def test_importing_tensorflow_shows_no_start_up_notices():
    result = run_script("-c", IMPORT, **ONEDNN_ON)
    assert result.returncode == 0 and result.stdout == "ready\n"
    assert "oneDNN" not in result.stderr and "absl::InitializeLog" not in result.stderr
    assert "cpu_feature_guard" not in result.stderr


@pytest.mark.slow
def test_asking_for_them_shows_them():
    result = run_script("-c", IMPORT, TF_CPP_MIN_LOG_LEVEL="0", **ONEDNN_ON)
    assert "oneDNN custom operations are on" in result.stderr


def test_warnings_errors_and_other_output_pass_through():
    text = (
        "a Python warning\n"
        "I0000 00:00:1795666926.049994    4940 port.cc:153] oneDNN custom operations are on.\n"
        "I0000 00:00:1795666926.086454    4940 cpu_feature_guard.cc:227] This binary is optimized.\n"
        "To enable the following instructions: AVX2, rebuild TensorFlow.\n"
        "W0000 00:00:1795666926.1    4940 loader.cc:9] a kernel is missing\n"
        "  its second line\n"
        "E0000 00:00:1795666926.2    4940 device.cc:1] an error\n"
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    )
    assert without_notices(text) == (
        "a Python warning\n"
        "W0000 00:00:1795666926.1    4940 loader.cc:9] a kernel is missing\n"
        "  its second line\n"
        "E0000 00:00:1795666926.2    4940 device.cc:1] an error\n"
    )


@pytest.mark.parametrize(
    "environ, machine, expected",
    [
        ({}, "x86_64", "1"),  # TensorFlow would leave it off on an AVX2-only CPU
        ({}, "AMD64", "1"),
        ({ONEDNN: "0"}, "x86_64", "0"),  # the user's choice
        ({}, "aarch64", None),  # TensorFlow's own choice
    ],
)
def test_onednn_is_turned_on_for_x86_cpus_unless_the_user_chose(environ, machine, expected):
    with_onednn_default(environ, machine)
    assert environ.get(ONEDNN) == expected


@pytest.mark.slow
def test_the_scripts_import_tensorflow_with_that_choice(monkeypatch):
    monkeypatch.delenv(ONEDNN, raising=False)
    show = IMPORT.replace("print('ready')", f"import os; print(os.environ.get('{ONEDNN}'))")
    expected = "1" if platform.machine() in X86 else "None"
    assert run_script("-c", show).stdout == expected + "\n"


def test_the_usable_cores_are_those_the_process_may_run_on_not_all_the_machine_has():
    on_one_core = "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
    counted = run_script(
        "-c", on_one_core + "from ground.quiet_tensorflow import usable_cores; print(usable_cores())"
    )
    assert counted.stdout == "1\n", counted.stderr


@pytest.mark.parametrize("setting, expected", [("3", 3), ("", None), ("0", None), ("many", None)])
def test_tensorflows_threads_are_the_users_setting_or_a_usable_core_each(monkeypatch, setting, expected):
    monkeypatch.setenv(INTRA_OP_THREADS, setting)
    assert intra_op_threads() == (expected or usable_cores())
