"""What the Makefile installs on a machine with an NVIDIA GPU (`make run GPU=1`, `make test GPU=1`):
TensorFlow's CUDA build and the project's libraries, never the CPU-only wheel."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT


def planned_installs(target: str, venv: Path) -> list[str]:
    """The arguments of the `pip install -r ...` that `make TARGET GPU=1` would run, not running it."""
    planned = subprocess.run(
        ["make", "-n", target, "GPU=1", f"VENV={venv}"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    [install] = [line.split() for line in planned.stdout.splitlines() if " -r " in line]
    return install[install.index("install") + 1 :]


def test_make_run_with_gpu_installs_the_gpu_requirements_and_not_the_tests_tools(tmp_path):
    install = planned_installs("run", tmp_path / "venv")
    assert "requirements-gpu.txt" in install and "requirements.txt" not in install
    assert "requirements-dev.txt" not in install


@pytest.mark.slow
def test_gpu_requirements_resolve_to_tensorflow_with_cuda_and_not_the_cpu_wheel(tmp_path):
    # What `make test GPU=1` installs (`make run GPU=1` the same without the tests' tools), resolved
    # without installing it: one resolution, since each copies gigabytes of CUDA wheels.
    report = tmp_path / "report.json"
    resolved = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--report", str(report)]
        + planned_installs("test", tmp_path / "venv"),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resolved.returncode == 0, resolved.stderr[-2000:]
    installs = {item["metadata"]["name"]: item for item in json.loads(report.read_text())["install"]}
    assert installs["tensorflow"].get("requested_extras") == ["and-cuda"]
    assert "tensorflow-cpu" not in installs and any(name.startswith("nvidia-cudnn") for name in installs)
    assert "pytest" in installs
