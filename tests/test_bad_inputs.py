"""Every case of the bad-input catalogue gets the behaviour it expects (tests/bad_inputs)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from napari_ssseg.errors import SsSegError
from tests.bad_inputs.cases import CASES
from tests.bad_inputs.observe import SURFACES, observe, problems


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_catalogue_is_complete() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    surfaces = Counter(case.surface for case in CASES)
    assert set(surfaces) == set(SURFACES), surfaces
    assert len(CASES) >= 30
    for case in CASES:  # outside the CLI, every refusal is one of our own errors
        if case.error is not None and case.surface != "cli":
            assert issubclass(case.error, SsSegError), case.name


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input(case, tmp_path: Path) -> None:
    observed = observe(case, tmp_path)
    assert problems(case, observed) == [], observed.message
