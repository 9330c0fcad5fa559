"""Checkpoint files: SHA-256 verification against the model card, safe loading, download.

Loading only ever uses ``torch.load(..., weights_only=True)``: a checkpoint is data, never code.
A file whose hash differs from its card is refused; a card without a published hash is usable
only with an explicit ``allow_unverified=True``. Nothing here runs at import time and nothing
downloads unless :func:`download_checkpoint` is called.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
import urllib.request
from pathlib import Path

import torch

from napari_ssseg.foundation.errors import CheckpointError
from napari_ssseg.settings.model_cards import ModelCard

log = logging.getLogger(__name__)

CACHE_ENV = "NAPARI_SSSEG_CACHE"
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$NAPARI_SSSEG_CACHE`` or ``~/.cache/napari-ssseg`` (created on first use by callers)."""
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else Path.home() / ".cache" / "napari-ssseg"


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checkpoint(path: str | Path, card: ModelCard, allow_unverified: bool = False) -> str:
    """Check ``path`` against ``card.sha256`` and return the file's actual SHA-256.

    Raises:
        CheckpointError: the file is missing; its hash differs from the card (the message names
            the file, the expected and the actual hash); or the card has no hash and
            ``allow_unverified`` is False.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file for {card.model_id} not found")
    if card.sha256 is None and not allow_unverified:
        raise CheckpointError(
            f"{path}: {card.model_id} has no published SHA-256, so this file cannot be verified; "
            "pass allow_unverified=True to use it on your own responsibility"
        )
    actual = sha256_file(path)
    if card.sha256 is not None and actual != card.sha256:
        raise CheckpointError(
            f"{path}: SHA-256 mismatch for {card.model_id}: expected {card.sha256}, got {actual}"
        )
    if card.sha256 is None:
        log.info("%s: using unverified checkpoint for %s (sha256 %s)", path, card.model_id, actual)
    return actual


def load_state_dict(
    path: str | Path, card: ModelCard, allow_unverified: bool = False
) -> tuple[dict[str, torch.Tensor], str]:
    """Verify then load a checkpoint's tensors; returns (state dict, actual SHA-256).

    Checkpoints saved as ``{"model": state}`` or ``{"state_dict": state}`` are unwrapped.
    """
    actual = verify_checkpoint(path, card, allow_unverified)
    try:
        loaded = torch.load(Path(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:  # objects beyond tensors: refused, nothing ran
        raise CheckpointError(
            f"{path}: refused: not a weights-only checkpoint, it holds pickled Python objects "
            f"other than tensors ({_unpickler_reason(error)}); napari-ssseg never runs code "
            "from a checkpoint file, so save the weights as a plain state dict of tensors"
        ) from error
    except Exception as error:  # torch raises several types for corrupt files
        first_line = (str(error).strip().splitlines() or [""])[0]
        message = f"{path}: cannot load as a weights-only checkpoint ({first_line})"
        raise CheckpointError(message) from error
    for key in ("model", "state_dict"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    tensors_only = isinstance(loaded, dict) and all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    )
    if not tensors_only:
        raise CheckpointError(f"{path}: not a state dict of tensors")
    return loaded, actual


def _unpickler_reason(error: Exception) -> str:
    """The line of torch's long weights-only refusal that says what was found (without
    its advice to load the file unsafely)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            reason = line.split("WeightsUnpickler error:", 1)[1].strip()
            if not reason and index + 1 < len(lines):
                reason = lines[index + 1]
            return reason.split(". Please use", 1)[0].rstrip(".")
    return type(error).__name__


def download_checkpoint(
    card: ModelCard, cache_dir: str | Path | None = None, url: str | None = None
) -> Path:
    """Fetch ``card``'s checkpoint into ``cache_dir`` (streamed, hashed, renamed when verified).

    An existing file with the right hash is reused. The download goes to a temporary file in
    the same folder and replaces the target only after its SHA-256 matched, so an interrupted or
    corrupt transfer never leaves a file under the final name.

    Args:
        card: the model card; it must carry a SHA-256 (unverifiable downloads are refused).
        cache_dir: destination folder (default :func:`default_cache_dir`).
        url: source URL overriding ``card.download_url`` (tests use ``file://``).

    Returns:
        The path of the verified checkpoint.
    """
    url = url or card.download_url
    if url is None:
        raise CheckpointError(
            f"{card.model_id} has no download URL; get it from {card.source_url} "
            "and pass the file's path instead"
        )
    if card.sha256 is None:
        raise CheckpointError(
            f"{card.model_id} has no published SHA-256, so a download cannot be verified; "
            f"download it yourself from {card.source_url} and pass its path"
        )
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / card.filename
    if target.is_file() and sha256_file(target) == card.sha256:
        return target
    digest = hashlib.sha256()
    handle, partial_name = tempfile.mkstemp(prefix=f".{card.filename}.", dir=folder)
    partial = Path(partial_name)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url) as response:
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
        actual = digest.hexdigest()
        if actual != card.sha256:
            raise CheckpointError(
                f"{url}: SHA-256 mismatch for {card.model_id}: "
                f"expected {card.sha256}, got {actual}; nothing was kept"
            )
        os.replace(partial, target)
    except OSError as error:
        raise CheckpointError(f"{url}: download of {card.model_id} failed ({error})") from error
    finally:
        partial.unlink(missing_ok=True)
    return target


def load_into(
    modules: dict[str, torch.nn.Module], state: dict[str, torch.Tensor], source: str
) -> None:
    """Load ``state`` strictly into named parts, e.g. ``{"mask_decoder": decoder, ...}``.

    Every key must start with one part's name and every part must receive all its weights;
    otherwise the checkpoint does not fit and a :class:`CheckpointError` names what is off.
    """
    stray = sorted({k.split(".")[0] for k in state} - set(modules))
    if stray:
        raise CheckpointError(f"{source}: unexpected weight groups {stray}")
    for name, module in modules.items():
        prefix = f"{name}."
        part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(part, strict=True)
        except RuntimeError as error:
            first_line = str(error).strip().splitlines()[0]
            raise CheckpointError(f"{source}: {name} weights do not fit ({first_line})") from error
