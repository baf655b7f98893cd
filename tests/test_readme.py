"""The README's Python snippet runs as written: train, evaluate and read an image from Python."""

import re
import subprocess
import sys

import pytest
from PIL import Image

from conftest import PROJECT_ROOT


def snippet(heading: str) -> str:
    """The first ```python block under `heading` in the README."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme[readme.index(heading) :]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


@pytest.mark.slow
def test_the_from_python_snippet_trains_evaluates_and_reads_a_seven(tmp_path, mnist):
    seven = mnist.x_test[0]  # MNIST's first test digit, written dark on light as a user's scan
    assert mnist.y_test[0] == 7
    Image.fromarray(255 - seven).resize((140, 140)).save(tmp_path / "my_seven.png")
    result = subprocess.run(
        [sys.executable, "-c", snippet("## From Python")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = re.search(r"test accuracy ([\d.]+)%; read (\d), not sure: (True|False)\n", result.stdout)
    assert printed, result.stdout[-2000:]
    assert float(printed.group(1)) > 90 and printed.group(2) == "7"
    assert (tmp_path / "artifacts/quick/run.json").exists()
    assert (tmp_path / "artifacts/quick/metrics.json").exists()
