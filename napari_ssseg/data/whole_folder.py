"""Folders written whole or not at all: the slice store's entries are built beside their final
place and renamed into it, so a crash never leaves half of one and twins may race."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from napari_ssseg.errors import SsSegError


@contextmanager
def folder_written_whole(
    folder: Path, marker: str, failure: Callable[[OSError], str]
) -> Iterator[Path]:
    """Yield a hidden ``.partial-*`` folder beside ``folder`` to write into; when the block
    ends without error it is renamed to ``folder``.

    An :class:`OSError` (disk full, read-only, a twin's rename that won the race) is ignored
    when ``folder`` already holds ``marker`` (the file written last, so its presence means a
    complete folder), and otherwise raised as :class:`SsSegError` with ``failure(error)`` as
    its message. The partial folder is always removed.
    """
    partial = folder.with_name(f".partial-{folder.name}-{uuid.uuid4().hex}")
    try:
        partial.mkdir(parents=True)
        yield partial
        os.replace(partial, folder)
    except OSError as error:
        if not (folder / marker).is_file():
            raise SsSegError(failure(error)) from error
    finally:
        shutil.rmtree(partial, ignore_errors=True)
