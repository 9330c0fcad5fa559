"""The volumes of a napari viewer as one project (no Qt): which layers pair up, which volumes
train together, and one :class:`AnnotationSession` per volume.

A volume is a 3-D image layer; its labels layer is the one the user chose with it, else the
one named ``"<image> labels"`` (what the folder reader and the widget's New button create).
An image with no labels layer is an unlabelled volume: it still trains, as unlabelled pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from napari.layers import Image, Labels

from napari_ssseg.folder_reader import PROJECT_KEY, labels_layer_name
from napari_ssseg.widgets.layers import PSEUDO_LABELS, UNCERTAINTY, same_grid, volume_from_layer
from napari_ssseg.widgets.session import AnnotationSession


@dataclass
class VolumeEntry:
    """One line of the volume list: name, annotated-slice count (None: no labels layer),
    whether it is the volume being worked on and whether it trains with it."""

    name: str
    annotated: int | None
    current: bool
    in_project: bool


class ProjectVolumes:
    """The viewer's volumes, their labels layers and their sessions.

    Sessions are cached by (image layer, labels layer) identity so that a volume keeps its
    prediction while the user works on another one.
    """

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self._sessions: dict[tuple[int, int | None], tuple[AnnotationSession, Any, Any]] = {}
        self._pairs: dict[str, str] = {}  # image layer name -> its labels layer's name
        self._in_project: dict[str, bool] = {}  # image layer name -> trains with the current

    def images(self) -> list[Image]:
        """The 3-D image layers, result layers excluded."""
        own = {PSEUDO_LABELS, UNCERTAINTY}
        return [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Image) and layer.ndim == 3 and layer.name not in own
        ]

    def pair(self, image: Image, labels: Labels) -> None:
        """Remember that ``labels`` holds the user's labels of ``image``."""
        if same_grid(image, labels):
            self._pairs[image.name] = labels.name

    def labels_of(self, image: Image) -> Labels | None:
        """The labels layer paired with ``image`` (on its grid), or None."""
        for name in (self._pairs.get(image.name), labels_layer_name(image.name)):
            found = [layer for layer in self.viewer.layers if layer.name == name] if name else []
            if found and isinstance(found[0], Labels) and same_grid(image, found[0]):
                return found[0]
        return None

    def in_project(self, image: Image) -> bool:
        """Whether ``image`` trains with the current volume; volumes opened from a folder
        do by default, others once the user checks them."""
        return self._in_project.setdefault(image.name, PROJECT_KEY in image.metadata)

    def set_in_project(self, name: str, value: bool) -> None:
        self._in_project[name] = bool(value)

    def others(self, current: Image | None) -> list[Image]:
        """The volumes that train with ``current``."""
        return [i for i in self.images() if i is not current and self.in_project(i)]

    def session(self, image: Image, labels: Labels | None) -> AnnotationSession:
        """The session of ``image`` with ``labels`` (None: an unlabelled volume)."""
        key = (id(image), None if labels is None else id(labels))
        cached = self._sessions.get(key)
        if cached is not None and cached[1] is image and cached[2] is labels:
            session = cached[0]
            if labels is not None:
                view = np.transpose(labels.data, (2, 1, 0))
                if not np.shares_memory(view, session.labels):
                    session.labels = view  # the layer's array was replaced
            return session
        volume = volume_from_layer(image)
        if labels is None:
            view = np.zeros(volume.shape, np.uint8)
        else:
            view = np.transpose(labels.data, (2, 1, 0))
        session = AnnotationSession(volume, view)
        self._sessions[key] = (session, image, labels)
        return session

    def forget_removed(self) -> None:
        """Drop the sessions of layers no longer in the viewer."""
        present = {id(layer) for layer in self.viewer.layers}
        for key, (_, image, labels) in list(self._sessions.items()):
            if id(image) not in present or (labels is not None and id(labels) not in present):
                del self._sessions[key]

    def entries(self, current: Image | None, current_labels: Labels | None) -> list[VolumeEntry]:
        """The volume list's lines, in layer order."""
        entries = []
        for image in self.images():
            is_current = image is current
            labels = current_labels if is_current else self.labels_of(image)
            if labels is not None and not same_grid(image, labels):
                labels = None
            count = None if labels is None else len(self.session(image, labels).annotated_slices)
            entries.append(VolumeEntry(image.name, count, is_current, self.in_project(image)))
        return entries

    def show_only(self, current: Image) -> None:
        """With other volumes in the project, show ``current`` (and its labels) and hide
        the others: they overlap in world space."""
        others = self.others(current)
        if not others:
            return
        for image in [current, *others]:
            visible = image is current
            image.visible = visible
            labels = self.labels_of(image)
            if labels is not None:
                labels.visible = visible
