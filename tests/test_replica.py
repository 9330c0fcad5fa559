"""The training loop's data-parallel hooks, without Ray: seeds per rank, agreed stopping,
the runner protocol, and the CLI's Ray options (none of which import Ray)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from napari_ssseg.annotation import AnnotatedVolume, Project
from napari_ssseg.cli import main
from napari_ssseg.io.volume import Volume
from napari_ssseg.runner.base import Runner
from napari_ssseg.runner.local import LocalRunner
from napari_ssseg.runner.ray_runner import RayRunner
from napari_ssseg.settings import TrainConfig
from napari_ssseg.training.loop import train
from napari_ssseg.training.replica import Replica
from tests.conftest import synthetic_case


@pytest.fixture(scope="module")
def project() -> Project:
    image, labels = synthetic_case()
    volume = Volume(image, np.diag([1.0, 1.0, 2.0, 1.0]), name="case")
    annotated = AnnotatedVolume.from_labels(volume, labels, 2, [4, 8, 12])
    return Project([annotated], ["ellipsoid", "blob"])


def config(max_iters: int = 6) -> TrainConfig:
    """``max_iters`` steps of the default method on a small network."""
    return TrainConfig.from_dict(
        {
            "device": "cpu",
            "seed": 5,
            "student": {"image_size": 32, "channels": [8, 16, 32]},
            "budget": {"max_iters": max_iters},
        }
    )


class RankOne(Replica):
    rank, world_size = 1, 2


class StopsAtThree(Replica):
    """A group in which another copy asks to stop before step 3."""

    def __init__(self) -> None:
        self.steps = 0

    def agree(self, fraction: float, stop: bool) -> tuple[float, bool]:
        self.steps += 1
        return fraction, stop or self.steps > 3


def weights(result) -> torch.Tensor:
    return torch.cat([v.flatten().float() for v in result.state_dict.values()])


def test_rank_zero_runs_the_single_process_loop_and_other_ranks_draw_their_own(project):
    torch.set_num_threads(1)
    plain = weights(train(project, config()))
    assert torch.equal(weights(train(project, config(), replica=Replica())), plain)
    assert not torch.equal(weights(train(project, config(), replica=RankOne())), plain)


def test_only_the_reporting_rank_reports(project):
    seen: list[int] = []
    train(project, config(), on_progress=lambda s: seen.append(s.iteration), replica=RankOne())
    assert seen == []
    train(project, config(), on_progress=lambda s: seen.append(s.iteration))
    assert seen == [1]


def test_a_stop_agreed_by_the_group_ends_every_copy_at_the_same_step(project):
    result = train(project, config(max_iters=50), replica=StopsAtThree())
    assert result.iterations == 3 and result.stopped_early


def test_both_runners_offer_the_runner_interface(tmp_path):
    assert isinstance(LocalRunner(work_root=tmp_path), Runner)
    assert isinstance(RayRunner(), Runner)


def test_help_and_the_ray_options_do_not_import_ray():
    code = (
        "import sys; from napari_ssseg.cli import build_parser; "
        "build_parser().parse_args(['predict', '--data', 'd', '--model', 'm', '--out', 'o', "
        "'--workers', '2']); print('ray' in sys.modules, 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["False", "False"], done.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["predict", "--model", "m", "--out", "o"], "either an IMAGE or --data DIR"),
        (["predict", "x.nii.gz", "--model", "m", "--out", "o", "--workers", "2"], "need --data"),
        (["predict", "--data", "d", "--model", "m", "--out", "o", "--workers", "0"], "at least 1"),
    ],
)
def test_predict_refuses_inconsistent_ray_options(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("napari-ssseg: error:") and message in err, err


def test_an_unreachable_cluster_is_an_error_at_start_not_a_hang(tmp_path):
    from napari_ssseg.runner.job import TrainingJob, VolumeInput

    image, labels = synthetic_case()
    volume = VolumeInput(labels=labels, annotated_slices=[4], axis=2, image=image)
    job = TrainingJob([volume], ["ellipsoid", "blob"], {"device": "cpu"}, tmp_path / "model")
    runner = RayRunner(address="127.0.0.1:9")  # the discard port: nothing listens there
    runner.start(job)
    (event,) = runner.poll()
    assert runner.status.value == "error" and event.status.value == "error"
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in runner.message or (
        "needs Ray" in runner.message
    )
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("Could not connect to 1.2.3.4:6379\nretrying", "Could not connect to 1.2.3.4:6379"),
        (
            "Initialization failure from server:\nTraceback (most recent call last):\n"
            '  File "proxier.py", line 5, in start\n    raise RuntimeError(x)\n'
            "RuntimeError: Timed out waiting for the raylet\n",
            "Initialization failure from server: RuntimeError: Timed out waiting for the raylet",
        ),
        (
            "Initialization failure from server:\nno token\n",
            "Initialization failure from server: no token",
        ),
        ("", ""),
    ],
)
def test_a_failed_connection_reads_as_one_line_that_names_the_cause(text, line):
    from napari_ssseg.runner.ray_cluster import connection_error_line

    assert connection_error_line(text) == line


def test_ray_client_init_is_retried_only_when_the_head_failed_to_start_its_server():
    from napari_ssseg.runner.ray_cluster import with_client_retries

    calls: list[int] = []

    def fails_then_works(times: int, error: Exception):
        def init() -> None:
            calls.append(1)
            if len(calls) <= times:
                raise error

        return init

    server = ConnectionAbortedError("Initialization failure from server:\nTraceback ...")
    with_client_retries(fails_then_works(2, server), close=list, attempts=3, backoff_s=0.0)
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(ConnectionAbortedError):
        with_client_retries(fails_then_works(3, server), close=list, attempts=3, backoff_s=0.0)
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(ConnectionRefusedError):  # not the server's start: no second try
        with_client_retries(
            fails_then_works(1, ConnectionRefusedError("no")), close=list, backoff_s=0.0
        )
    assert len(calls) == 1


def test_a_ray_client_init_without_answer_is_closed_and_tried_again(monkeypatch):
    """The head's server for a client can die as it starts and leave ``ray.init`` waiting
    for ever: past the deadline the connection is closed (which ends the wait) and a new
    one made; when even the close does not end the wait, a clear error instead of a hang."""
    import threading

    from napari_ssseg.runner import ray_cluster

    answered = threading.Event()
    calls: list[int] = []
    closes: list[int] = []

    def init() -> None:
        calls.append(1)
        if len(calls) == 1:  # the first connection waits until it is closed
            answered.wait()
            raise ConnectionError("Request cannot be fulfilled: the data client disconnected")

    def close() -> None:
        closes.append(1)
        answered.set()

    ray_cluster.with_client_retries(init, close=close, backoff_s=0.0, timeout_s=0.2)
    assert (len(calls), len(closes)) == (2, 1)

    never = threading.Event()
    monkeypatch.setattr(ray_cluster, "CLIENT_CLOSE_TIMEOUT_S", 0.2)
    with pytest.raises(
        ray_cluster.ClusterError, match="no answer within 0.2 s.*could not be closed"
    ):
        ray_cluster.with_client_retries(never.wait, close=list, backoff_s=0.0, timeout_s=0.2)
    never.set()
    with pytest.raises(ray_cluster.ClientInitTimeout, match="within 0.2 s"):
        ray_cluster.with_client_retries(
            lambda: answered.clear() or answered.wait(),
            close=answered.set,
            attempts=2,
            backoff_s=0.0,
            timeout_s=0.2,
        )
