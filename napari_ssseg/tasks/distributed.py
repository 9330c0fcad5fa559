"""Data-parallel training on a Ray cluster with Ray Train's ``TorchTrainer`` (DDP underneath).

:func:`train_data_parallel` starts ``workers`` copies of the training loop
(:func:`napari_ssseg.training.loop.train`), one per Ray Train worker, each with a
:class:`TorchReplica`: gradients are averaged by DDP (gloo on the CPU, NCCL on GPUs), every
copy draws its own slices, and the copies agree on progress and stopping before each step.
Since the weights are identical on every copy after each step, so is the EMA teacher updated
from them. The foundation teacher (method ``sc-sam``) keeps its own state identical through
the same process group (:mod:`napari_ssseg.training.peers`): each slice's embedding is made
once, by one copy, and sent to every copy's cache; each copy computes its share of the
foundation model's targets and they are exchanged; the LoRA adapters start from rank 0's and
their gradients are averaged. Each copy prepares the slices into its own temporary disk store
(:mod:`napari_ssseg.data.slice_store`, deleted when it ends) and reads its batches from there,
so copies sharing a node do not each hold every prepared volume in memory. Rank 0 reports
progress and hands back the trained model through a small actor, so neither a checkpoint nor
a shared file system is needed.

Ray is imported inside the functions: importing this module does not need Ray.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from napari_ssseg.annotation import Project
from napari_ssseg.errors import SsSegError, TrainingCancelled
from napari_ssseg.model_store import TrainedModel
from napari_ssseg.settings import TrainConfig
from napari_ssseg.tasks.train import train_model
from napari_ssseg.training.loop import TrainProgress
from napari_ssseg.training.replica import Replica


@dataclass
class TrainingInputs:
    """What every worker trains on: the project, the settings and an optional warm start."""

    project: Project
    config: TrainConfig
    init: TrainedModel | None = None
    threads: int | None = None


class WorkerFailed(Exception):
    """A training worker raised; ``message`` is one line naming the worker and the error.

    Attributes:
        rank: the worker's rank.
        error_type: the class name of the error it raised.
        detail: the error's own message.
        user_error: True for an :class:`SsSegError` (bad input), reported as it is.
    """

    def __init__(self, rank: int, error_type: str, detail: str, user_error: bool) -> None:
        self.rank, self.error_type, self.detail, self.user_error = (
            rank,
            error_type,
            detail,
            user_error,
        )
        first_line = detail.strip().splitlines()[0] if detail.strip() else ""
        super().__init__(f"{error_type}: {first_line} (on training worker {rank})")


class TorchReplica(Replica):
    """One copy of the loop in a ``torch.distributed`` process group (set up by Ray Train)."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank = rank
        self.world_size = world_size

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP around ``model`` (Ray Train's ``prepare_model``; no wrapper for one worker)."""
        from ray.train.torch import prepare_model

        return prepare_model(model, move_to_device=False)

    def agree(self, fraction: float, stop: bool) -> tuple[float, bool]:
        if self.world_size == 1:
            return fraction, stop
        import torch.distributed as dist

        values = torch.tensor([fraction, float(stop)], dtype=torch.float64)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return float(values[0]), bool(values[1] > 0)

    def all_agree(self, flag: bool) -> bool:
        if self.world_size == 1:
            return flag
        import torch.distributed as dist

        value = torch.tensor([float(flag)], dtype=torch.float64)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value[0] > 0)


def check_data_parallel(config: TrainConfig, workers: int) -> None:
    """Refuse settings data-parallel training cannot honour, naming them (every method's
    teachers are kept in step across workers, so only the worker count is checked)."""
    if workers < 1:
        raise SsSegError(f"workers must be at least 1, not {workers}")


def _worker_loop(settings: dict[str, Any]) -> None:
    """The function every Ray Train worker runs (``train_loop_per_worker``)."""
    import ray
    import ray.train

    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    box = settings["box"]
    try:
        inputs: TrainingInputs = settings["load"]()
        if torch.cuda.is_available():
            # Ray Train gives each worker its own GPU; "cuda" then means that one.
            import ray.train.torch

            torch.cuda.set_device(ray.train.torch.get_device())
        if inputs.threads:
            torch.set_num_threads(inputs.threads)
        replica = TorchReplica(rank, world_size)
        reporting = replica.reports
        model = train_model(
            inputs.project,
            inputs.config,
            inputs.init,
            on_progress=settings["on_progress"] if reporting else None,
            should_stop=settings["should_stop"] if reporting else None,
            replica=replica,
            stream=True,  # every worker on a node would hold its own prepared copy
        )
        if reporting:
            ray.get(box.set_model.remote(model))
    except BaseException as error:
        user_error = isinstance(error, SsSegError)
        detail = str(error) if user_error else f"{error}\n{traceback.format_exc()}"
        ray.get(box.fail.remote(rank, type(error).__name__, detail, user_error))
        raise


class _ResultBox:
    """A small actor holding rank 0's model and the first worker error."""

    def __init__(self) -> None:
        self.model: TrainedModel | None = None
        self.failure: tuple[int, str, str, bool] | None = None

    def set_model(self, model: TrainedModel) -> None:
        self.model = model

    def fail(self, rank: int, error_type: str, detail: str, user_error: bool) -> None:
        # The first error is the cause; the others are mostly peers losing their partner.
        if self.failure is None:
            self.failure = (rank, error_type, detail, user_error)

    def outcome(self) -> tuple[TrainedModel | None, tuple[int, str, str, bool] | None]:
        return self.model, self.failure


def train_data_parallel(
    load: Callable[[], TrainingInputs],
    workers: int,
    use_gpu: bool = False,
    cpus_per_worker: float = 1.0,
    on_progress: Callable[[TrainProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainedModel:
    """Train on ``workers`` Ray Train workers of the connected Ray cluster.

    ``load`` runs on every worker and returns what to train on (it is shipped with the
    function, so it should fetch its data from Ray's object store, not from local files).
    ``on_progress`` and ``should_stop`` run on rank 0 and must be picklable. Raises
    :class:`WorkerFailed` when a worker raised, :class:`TrainingCancelled` when stopped before
    the first step.
    """
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    box = ray.remote(num_cpus=0)(_ResultBox).remote()
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "load": load,
            "box": box,
            "on_progress": on_progress,
            "should_stop": should_stop,
        },
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=use_gpu,
            resources_per_worker={"GPU": 1, "CPU": cpus_per_worker}
            if use_gpu
            else {"CPU": cpus_per_worker},
        ),
        run_config=RunConfig(failure_config=FailureConfig(max_failures=0)),
    )
    try:
        trainer.fit()
    except Exception as error:
        _, failure = ray.get(box.outcome.remote())
        if failure is None:
            raise
        rank, error_type, detail, user_error = failure
        if error_type == TrainingCancelled.__name__:
            raise TrainingCancelled(detail.splitlines()[0]) from None
        raise WorkerFailed(rank, error_type, detail, user_error) from error
    finally:
        model, failure = ray.get(box.outcome.remote())
        ray.kill(box)
    if model is None:
        raise RuntimeError("training ended without a model from rank 0")
    return model
