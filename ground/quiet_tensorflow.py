"""Importing TensorFlow as the project runs it: with oneDNN on x86 CPUs, without its C++ notices.

    from quiet_tensorflow import import_tensorflow_quietly

    import_tensorflow_quietly()  # each script, before its other imports

TensorFlow's native code logs a few INFO lines on import (oneDNN is on, the CPU's instructions, an
absl notice) that TF_CPP_MIN_LOG_LEVEL no longer reaches. They say nothing a user can act on, so
they are held back; warnings and errors logged at the same time still show. With
TF_CPP_MIN_LOG_LEVEL=0 everything shows, as TensorFlow prints it.

TensorFlow turns its oneDNN kernels on only where the CPU has the newest vector instructions
(AVX-512's VNNI or BF16, AVX-VNNI, AMX); on an older AVX2 CPU its own matrix code is the slower one
(bench/NOTES.md), so oneDNN is turned on for every x86 CPU. TF_ENABLE_ONEDNN_OPTS set by the user
wins. Its threads within an op are a usable core each unless TF_NUM_INTRAOP_THREADS says otherwise
(intra_op_threads, as run records state it).
"""

from __future__ import annotations

import os
import platform
import re
import sys
import tempfile
from collections.abc import MutableMapping

# absl's format: severity letter, date, time, thread, file:line]; continuation lines lack it.
LOG_RECORD = re.compile(r"[IWEF]\d{4} [\d:.]+ +\d+ [^ \]]+:\d+\] ")
ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
ONEDNN = "TF_ENABLE_ONEDNN_OPTS"
X86 = ("x86_64", "AMD64")  # platform.machine() on Linux and macOS, and on Windows
INTRA_OP_THREADS = "TF_NUM_INTRAOP_THREADS"  # TensorFlow's threads within one op, read at its first op


def usable_cores() -> int:
    """The cores this process may run on: a container or `taskset` may allow fewer than the machine has."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def intra_op_threads() -> int:
    """The threads TensorFlow runs each op on: INTRA_OP_THREADS where it is set, else a usable core each."""
    threads = os.environ.get(INTRA_OP_THREADS, "")
    return int(threads) if threads.isdigit() and int(threads) > 0 else usable_cores()


def with_onednn_default(environ: MutableMapping[str, str], machine: str) -> None:
    """oneDNN on (ONEDNN=1 in `environ`) on an x86 `machine` unless the user chose already."""
    if machine in X86:
        environ.setdefault(ONEDNN, "1")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with stderr held back, then replay all of it but the INFO records."""
    if "tensorflow" in sys.modules:  # too late for any setting
        return
    with_onednn_default(os.environ, platform.machine())
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        import tensorflow  # noqa: F401

        return
    with tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        real_stderr = os.dup(2)
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(real_stderr, 2)
            os.close(real_stderr)
        held.seek(0)
        sys.stderr.write(without_notices(held.read().decode(errors="replace")))


def without_notices(text: str) -> str:
    """`text` less absl's INFO records (with their continuation lines) and its start-up notice."""
    kept, keeping = [], True
    for line in text.splitlines(keepends=True):
        if LOG_RECORD.match(line):
            keeping = not line.startswith("I")
        elif line.strip() == ABSL_NOTICE:
            continue
        if keeping:
            kept.append(line)
    return "".join(kept)
