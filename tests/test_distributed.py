"""Scale-out: a KerasTuner search shared by a chief and two workers (and one refusing an intruder's
reports), and train.py on two MultiWorkerMirroredStrategy workers, each a separate process on
127.0.0.1."""

import csv
import json

import grpc
import keras_tuner
import pytest
import tensorflow as tf
from keras_tuner.src import protos

import train
from conftest import TINY_TRAINING, assert_tensorboard_logs, run_script, start_script
from harness.local_server import free_ports
from recipe.settings import resolve

pytestmark = [pytest.mark.slow, pytest.mark.network]


def finish(processes, timeout=600):
    """Wait for every process; return their (stdout, stderr), failing on any non-zero exit."""
    try:
        outputs = [process.communicate(timeout=timeout) for process in processes]
    finally:
        for process in processes:  # none outlives a failed test
            if process.poll() is None:
                process.kill()
                process.communicate()
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]
    return outputs


def test_chief_and_two_workers_share_one_search(tmp_path):
    argv = ["tune.py", "--limit", "1000", "--max-epochs", "3", "--out", str(tmp_path)]
    oracle = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(free_ports(1)[0])}
    chief = start_script(*argv, KERASTUNER_TUNER_ID="chief", **oracle)
    workers = [start_script(*argv, KERASTUNER_TUNER_ID=f"tuner{index}", **oracle) for index in range(2)]
    (chief_out, _), *worker_outputs = finish([chief, *workers])
    for index, (stdout, _) in enumerate(worker_outputs):
        assert "val_accuracy:" in stdout, f"worker {index} trained nothing"  # an epoch's line
        assert f"tuner{index}: the search is finished" in stdout
    with open(tmp_path / "trials.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 6 and {row["status"] for row in rows} == {"COMPLETED"}
    assert "best of 6 trials" in chief_out
    best = json.loads((tmp_path / "best_config.json").read_text())
    assert resolve(best).as_dict() == best


def oracle_stub(port):
    """A gRPC client of the chief's oracle, as anyone who reaches its port can make one."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=120)
    return protos.get_service_grpc().OracleStub(channel), protos.get_service()


def forge_a_report(stub, service):
    """A trial asked for and reported on with settings and scores outside the search: the trial."""
    issued = stub.CreateTrial(service.CreateTrialRequest(tuner_id="tuner0")).trial
    not_a_number = {"val_accuracy": float("nan")}
    with pytest.raises(grpc.RpcError):
        stub.UpdateTrial(service.UpdateTrialRequest(trial_id=issued.trial_id, metrics=not_a_number))
    stub.UpdateTrial(service.UpdateTrialRequest(trial_id=issued.trial_id, metrics={"val_accuracy": 1.0}))
    forged = keras_tuner.engine.trial.Trial.from_proto(issued)
    forged.hyperparameters.values.update({"layers": 10**9, "width_1": 123456, "lr": float("nan")})
    forged.status = "COMPLETED"
    stub.EndTrial(service.EndTrialRequest(trial=forged.to_proto()))
    return issued


@pytest.mark.parametrize("tuner", [["--tuner", "hyperband"], ["--tuner", "bayesian", "--trials", "7"]])
def test_reports_from_outside_the_search_space_never_become_the_best(tmp_path, tuner):
    port = free_ports(1)[0]
    argv = ["tune.py", *tuner, "--limit", "1000", "--max-epochs", "3", "--out", str(tmp_path)]
    oracle = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port)}
    chief = start_script(*argv, KERASTUNER_TUNER_ID="chief", **oracle)
    try:
        stub, service = oracle_stub(port)
        # Under the worker's name, so that the chief does not wait for the intruder to finish; more
        # refused in a row than KerasTuner's failures in a row that end a search (3).
        issued = [forge_a_report(stub, service) for _ in range(4)]
    except BaseException:
        chief.kill()
        chief.communicate()
        raise
    worker = start_script(*argv, KERASTUNER_TUNER_ID="tuner0", **oracle)
    (_, chief_err), _ = finish([chief, worker])
    assert "outside the search" in chief_err
    with open(tmp_path / "trials.csv", newline="") as stream:
        rows = {row["trial"]: row for row in csv.DictReader(stream)}
    assert [rows[trial.trial_id]["status"] for trial in issued] == ["FAILED"] * 4
    assert sum(row["status"] == "COMPLETED" for row in rows.values()) >= 1
    best = json.loads((tmp_path / "best_config.json").read_text())
    assert resolve(best).as_dict() == best and 123456 not in best["model"]["hidden"]
    assert best["training"]["lr"] == best["training"]["lr"]  # not NaN


def test_two_workers_train_the_same_weights_and_only_the_chief_saves(tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = [
        start_script(
            "train.py",
            "--strategy",
            "multiworker",
            *TINY_TRAINING,
            "--out",
            str(tmp_path / f"worker{index}"),
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        )
        for index in range(2)
    ]
    outputs = finish(workers)
    fingerprints = [
        line.rsplit(" ", 1)[-1]
        for stdout, _ in outputs
        for line in stdout.splitlines()
        if line.startswith("trained mlp on worker")
    ]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1]
    record = json.loads((tmp_path / "worker0" / "run.json").read_text())
    assert record["weights_sha256"].startswith(fingerprints[0])
    assert record["distribution"] == {"strategy": "multiworker", "replicas": 2} and record["epochs_run"] == 2
    assert record["final"]["val_accuracy"] > 0.7  # chance is 0.1
    assert not (tmp_path / "worker1" / "model.keras").exists()
    assert_tensorboard_logs(tmp_path / "worker0" / "logs", epochs=2)
    assert not (tmp_path / "worker1" / "logs").exists()
    evaluation = run_script("evaluate.py", "--model", str(tmp_path / "worker0" / "model.keras"))
    assert evaluation.returncode == 0, evaluation.stderr[-2000:]


def test_mirrored_strategy_trains_on_every_local_gpu_or_the_cpu_like_the_default(trained_run, tmp_path):
    _, record = train.main(TINY_TRAINING + ["--strategy", "mirrored", "--out", str(tmp_path)])
    replicas = max(1, len(tf.config.list_physical_devices("GPU")))
    assert record["distribution"] == {"strategy": "mirrored", "replicas": replicas}
    assert record["training"] == trained_run.record["training"]
    # One replica sees the same batches as the default strategy: the same run, up to float rounding.
    expected = trained_run.record["final"]["val_accuracy"]
    assert record["final"]["val_accuracy"] == pytest.approx(expected, abs=0.02 if replicas == 1 else 0.1)
    assert (tmp_path / "model.keras").exists()


def test_multiworker_without_tf_config_says_what_is_missing(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        train.main(TINY_TRAINING + ["--strategy", "multiworker", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--strategy multiworker needs TF_CONFIG" in capsys.readouterr().err
