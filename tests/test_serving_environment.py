"""predict.py and serve.py where only requirements-serve.txt is installed: TensorFlow cannot be
imported, an ONNX export reads as the Keras model it came from, a .keras file is one clear error,
and serve.py's workers are restarted, or left down, as its supervisor promises."""

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import predict
from conftest import PROJECT_ROOT, onnx_path, wait_until
from harness.local_server import local_server, running_server
from server.guards import MAX_RESTARTS


@pytest.fixture(scope="module")
def serving_python(tmp_path_factory) -> str:
    """The Python of a new virtual environment holding requirements-serve.txt and nothing else."""
    environment = tmp_path_factory.mktemp("serving-venv")
    # Without a pip of its own: this environment's pip installs into it (--python), quicker than a new one.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(environment)], check=True)
    python = str(environment / "bin" / "python")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet"]
        + ["-r", "requirements-serve.txt"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]  # it needs PyPI, as `make` does
    return python


def run_with(python, *args):
    return subprocess.run([python, *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_the_serving_environment_cannot_import_tensorflow(serving_python):
    found = run_with(
        serving_python,
        "-c",
        "import importlib.util as u; print([m for m in ('tensorflow', 'keras', 'matplotlib', 'sklearn') "
        "if u.find_spec(m)])",
    )
    assert found.stdout.strip() == "[]"


@pytest.mark.slow
def test_predict_reads_with_an_onnx_export_as_with_its_keras_model(
    serving_python, exported, trained_run, rerendered, written_number, capsys
):
    files = [str(rerendered / f"{index:03d}.png") for index in range(40)]
    for flags in (files, ["--number", str(written_number)]):
        # The Keras readings to match, in this process, where TensorFlow has started already.
        predict.main(["--json", "--model", str(trained_run.folder / "model.keras"), *flags])
        keras_readings = json.loads(capsys.readouterr().out)["predictions"]
        with_onnx = run_with(
            serving_python, "predict.py", "--json", "--model", str(onnx_path(exported)), *flags
        )
        assert with_onnx.returncode == 0, with_onnx.stderr
        onnx_readings = json.loads(with_onnx.stdout)["predictions"]
        for read_by_keras, read_by_onnx in zip(keras_readings, onnx_readings, strict=True):
            for keras_digit, onnx_digit in zip(
                read_by_keras.get("digits", [read_by_keras]),
                read_by_onnx.get("digits", [read_by_onnx]),
                strict=True,
            ):
                answer = ("digit", "not_sure", "not_a_digit")
                assert [onnx_digit[key] for key in answer] == [keras_digit[key] for key in answer]
                assert onnx_digit["confidence"] == pytest.approx(keras_digit["confidence"], abs=1e-4)


@pytest.mark.slow
def test_a_keras_model_where_tensorflow_is_missing_is_one_clear_error(
    serving_python, untrained_run, written_number
):
    result = run_with(
        serving_python,
        "predict.py",
        str(written_number),
        "--model",
        str(untrained_run.folder / "model.keras"),
    )
    assert result.returncode == 1
    assert "needs TensorFlow" in result.stderr and "python export.py" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.network
def test_two_server_processes_answer_from_an_onnx_export_like_the_keras_model(
    serving_python, exported, trained_run, written_number
):
    body = written_number.read_bytes()

    def answer(url, path):
        request = urllib.request.Request(url + path, data=body, headers={"Content-Type": "image/png"})
        return json.load(urllib.request.urlopen(request, timeout=30))

    with running_server(trained_run.folder / "model.keras") as url:
        by_keras = answer(url, "/api/number")
    # running_server waits until both processes have answered /healthz.
    with running_server(onnx_path(exported), workers=2, python=serving_python) as url:
        by_onnx = answer(url, "/api/number")
        about = json.load(urllib.request.urlopen(url + "/api/model"))
    assert by_onnx["number"] == by_keras["number"]
    assert [digit["box"] for digit in by_onnx["digits"]] == [digit["box"] for digit in by_keras["digits"]]
    assert about["not_sure_below"] == trained_run.record["calibration"]["threshold"]
    assert "10 sigmoid units" in about["probabilities"]


def worker_pids(parent: int) -> set[int]:
    """serve.py's worker processes: its children that multiprocessing spawned to serve, and that
    are still alive by the time /proc is read (a thread or a child may end while it is listed)."""
    children = set()
    for task in Path(f"/proc/{parent}/task").iterdir():
        children.update(int(pid) for pid in proc_text(task / "children").split())
    return {
        pid
        for pid in children
        if (command := proc_text(Path(f"/proc/{pid}/cmdline"))) and "resource_tracker" not in command
    }


def proc_text(path: Path) -> str:
    """A /proc file's text, or "" where its process or thread has ended meanwhile."""
    try:
        return path.read_text(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def replacement(parent: int, dead: int, others: set[int]) -> int:
    """The worker the supervisor starts in place of `dead`."""
    wait_until(lambda: worker_pids(parent) - {dead, *others}, 30, "a worker in the dead one's place")
    (new,) = worker_pids(parent) - {dead, *others}
    return new


def healthy(url: str) -> bool:
    with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
        return json.load(response)["status"] == "ok"


@pytest.mark.slow
@pytest.mark.network
def test_a_worker_that_keeps_dying_is_left_down_and_a_failed_restart_stops_only_its_place(
    serving_python, exported, tmp_path
):
    record, folder = exported
    shutil.copy(onnx_path(exported), tmp_path / "model.onnx")
    shutil.copy(folder / "export.json", tmp_path / "export.json")
    with local_server(tmp_path / "model.onnx", workers=3, python=serving_python) as server:
        parent = server.process.pid
        first, second, third = sorted(worker_pids(parent))
        for _ in range(MAX_RESTARTS):  # each death is made good by a new worker in its place
            os.kill(first, signal.SIGKILL)
            first = replacement(parent, first, {second, third})
        os.kill(first, signal.SIGKILL)  # once more than that: its place is left empty
        wait_until(lambda: "keeps dying; 2 worker(s) serve on" in server.logged(), 30, "the supervisor")
        assert worker_pids(parent) == {second, third} and healthy(server.url)
        (tmp_path / "model.onnx").write_bytes(b"damaged during a deploy")
        os.kill(second, signal.SIGKILL)  # its replacement cannot load the model: the third serves on
        wait_until(lambda: "failed to start; 1 worker(s) serve on" in server.logged(), 30, "the supervisor")
        assert worker_pids(parent) == {third} and healthy(server.url)
        os.kill(third, signal.SIGKILL)  # and then no worker is left
        wait_until(lambda: server.process.poll() is not None, 30, "the server to stop")
        assert server.process.returncode == 1 and "no worker is left" in server.logged()
