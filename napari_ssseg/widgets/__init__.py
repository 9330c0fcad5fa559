"""napari dock widget of napari-ssseg (Qt). The session state it edits is Qt-free:
:mod:`napari_ssseg.widgets.session`, :mod:`napari_ssseg.widgets.layers`.

Importing this package keeps ``triton`` out of the napari process when Mesa's LLVM is
already loaded there (software rendering through llvmpipe, as under Xvfb, or radeonsi):
triton bundles its own LLVM, and importing it next to Mesa's (torch does so on import of
``torch._dynamo``, pulled in by torchvision and so by MONAI) crashes the process with a
segmentation fault. The napari process never compiles kernels; training runs in a fresh
child process, where triton stays available.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _mesa_llvm_loaded() -> bool:
    """Whether a shared LLVM library is mapped into this process (Linux only)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    return "libLLVM" in maps


if "triton" not in sys.modules and _mesa_llvm_loaded():
    sys.modules["triton"] = None  # `import triton` now raises ImportError: torch skips it
