"""The dock widget driven through its own controls in a real viewer, and its Qt-free session."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_ssseg.errors import AnnotationError
from napari_ssseg.inference.predict import Prediction
from napari_ssseg.io.nifti import read_volume
from napari_ssseg.io.volume import Volume
from napari_ssseg.project_store import load_project
from napari_ssseg.runner import LocalRunner, RunResult, VolumeResult
from napari_ssseg.settings import TrainConfig
from napari_ssseg.settings.values import merged
from napari_ssseg.widgets.session import AnnotationSession, parse_class_names

TINY = {
    "student": {"image_size": 64, "channels": [8, 16, 32]},
    "budget": {"max_iters": 30},
    "prediction": {"passes": 2},
}
LIVER = 5  # the sample's label id of the liver
REVEALED = (8, 15, 22)


# -- the Qt-free session ----------------------------------------------------------------------


def small_session() -> AnnotationSession:
    image = Volume(np.random.default_rng(0).random((6, 5, 4), np.float32), np.eye(4), name="v")
    labels = np.zeros((6, 5, 4), np.uint8)
    labels[1:3, 1:3, 1] = 1
    session = AnnotationSession(image, labels, ["organ"], axis=2)
    predicted = np.zeros((6, 5, 4), np.int16)
    predicted[2:4, 2:4, :] = 1
    scores = np.array([0.1, 0.0, 0.3, 0.2])
    session.prediction = Prediction(predicted, np.zeros((6, 5, 4), np.float32), scores, [1], 2)
    return session


def test_session_marks_accepts_and_ranks_slices():
    session = small_session()
    assert parse_class_names(" liver, ,spleen ") == ["liver", "spleen"]
    assert session.annotated_slices == [1]
    assert session.review_queue() == [2, 3, 0]
    with pytest.raises(AnnotationError, match="holds labels"):
        session.toggle_empty_mark(1)
    assert session.toggle_empty_mark(0) is True and session.annotated_slices == [0, 1]
    assert session.review_queue() == [2, 3]
    assert session.toggle_empty_mark(0) is False and session.annotated_slices == [1]

    session.accept(2)
    assert np.array_equal(session.labels[:, :, 2], session.prediction.labels[:, :, 2])
    assert session.annotated_slices == [1, 2] and session.review_queue() == [3, 0]
    with pytest.raises(AnnotationError, match="annotated already"):
        session.accept(2)
    final = session.final_prediction()
    assert np.array_equal(final.labels[:, :, 1], session.labels[:, :, 1])  # the user's labels
    assert np.array_equal(final.labels[:, :, 0], session.prediction.labels[:, :, 0])
    assert final.annotated == [1, 2]


def test_session_agreement_compares_old_and_new_predictions_on_accepted_slices(tmp_path):
    session = small_session()
    session.accept(2)
    session.labels[2, 2, 2] = 0  # the user corrects one of the four accepted pixels
    job = session.job(TrainConfig.from_dict({"student": {"image_size": 32}}), tmp_path / "model")
    assert job.volumes[0].probe_slices == [2] and job.init_model_dir is None

    new_raw = np.zeros((1, 6, 5), np.int16)
    new_raw[0, 3, 3] = new_raw[0, 2, 3] = new_raw[0, 3, 2] = 1  # exactly the corrected slice
    result = RunResult(
        tmp_path / "model",
        {},
        [VolumeResult(session.image.name, session.prediction, [2], new_raw)],
    )
    session.apply(result)
    agreement = session.agreement
    assert agreement.slices == [2]
    assert agreement.before == pytest.approx(2 * 3 / (4 + 3))
    assert agreement.after == pytest.approx(1.0)


def test_session_warm_starts_only_a_model_of_the_same_architecture(tmp_path):
    from napari_ssseg.model_store import TrainedModel, save_model
    from napari_ssseg.networks.unet import unet_for

    config = TrainConfig.from_dict({"student": {"image_size": 32, "channels": [4, 8, 16]}})
    state = unet_for(config.student, 1).state_dict()
    session = small_session()
    session.model_dir = save_model(TrainedModel(state, config, ["organ"]), tmp_path / "model")
    same = TrainConfig.from_dict({"student": {"image_size": 64, "channels": [4, 8, 16]}})
    assert session.job(same, tmp_path / "next").init_model_dir == tmp_path / "model"
    # The default channels differ from the saved model's.
    other = TrainConfig.from_dict({"student": {"image_size": 64}})
    assert session.job(other, tmp_path / "next").init_model_dir is None
    session.class_names = ["organ", "vessel"]
    assert session.job(same, tmp_path / "next").init_model_dir is None


# -- the widget in a real viewer ---------------------------------------------------------------

pytest.importorskip("napari")


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    """One prewarmed runner for the module: its spare process imports torch while the
    viewers start."""
    runner = LocalRunner(work_root=tmp_path_factory.mktemp("runs"), prewarm=True)
    yield runner
    runner.close()


@pytest.fixture
def ct_widget(make_napari_viewer, runner, tmp_path, qtbot):
    """A viewer with the CT sample and the widget docked, its project folder in tmp_path."""
    from napari_ssseg.widgets.dock import SsSegWidget

    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-ssseg", "ct")
    widget = SsSegWidget(viewer, runner=runner)
    viewer.window.add_dock_widget(widget, name="napari-ssseg")
    widget.image_combo.setCurrentText("example_ct_sm")
    widget.project_edit.setText(str(tmp_path / "project"))
    widget.config_overrides = dict(TINY)
    yield viewer, widget
    widget.shutdown()


def reveal_liver(viewer, widget, slices=REVEALED):
    """Paint the sample's liver on a few slices into a new labels layer, as a user would."""
    widget.new_labels_layer()
    labels = viewer.layers["example_ct_sm labels"]
    reference = viewer.layers["example_ct_sm reference labels"].data
    for z in slices:
        labels.data[z][reference[z] == LIVER] = 1
    labels.events.paint()  # what napari emits after a brush stroke
    widget.class_edit.setText("liver")
    return labels


def click_train_and_wait(widget, qtbot, timeout_s=120):
    """Click Train; returns the largest gap (s) between 20 ms timer ticks until the run ends."""
    from qtpy.QtCore import Qt, QTimer

    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start(20)
    finished: list[float] = []
    widget.monitor.finished.connect(lambda _e: finished.append(time.monotonic()))
    qtbot.mouseClick(widget.train_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(finished), timeout=timeout_s * 1000)
    timer.stop()
    during = [t for t in ticks if t <= finished[0]]
    return float(np.max(np.diff(during))) if len(during) > 1 else 0.0


@pytest.mark.gui
@pytest.mark.slow
def test_train_review_accept_export_retrain_restore(ct_widget, qtbot, tmp_path):
    from napari.utils.key_bindings import coerce_keybinding
    from qtpy.QtCore import Qt

    viewer, widget = ct_widget
    image = viewer.layers["example_ct_sm"]
    labels = reveal_liver(viewer, widget)
    qtbot.waitUntil(lambda: widget.annotated_label.text().startswith("3 annotated"))

    gap = click_train_and_wait(widget, qtbot)
    assert not widget.warm_started
    print(f"largest event-loop gap while training: {1000 * gap:.0f} ms")
    print(f"click to result layers: {widget.last_click_to_result:.1f} s")
    assert gap < 0.2
    pseudo, uncertainty = viewer.layers["pseudo-labels"], viewer.layers["uncertainty"]
    for layer in (pseudo, uncertainty):
        assert layer.data.shape == image.data.shape
        assert np.allclose(layer.scale, image.scale) and np.allclose(
            layer.translate, image.translate
        )
    assert pseudo.data.dtype.kind in "iu"
    assert uncertainty.colormap.name == "inferno" and uncertainty.blending == "additive"
    assert uncertainty.opacity == pytest.approx(0.5)
    for z in REVEALED:  # the user's labels are kept exactly on annotated slices
        assert np.array_equal(pseudo.data[z], labels.data[z])

    # Review: the queue holds the unannotated slices, most uncertain first.
    queue = widget.review_queue()
    assert sorted(queue) == [z for z in range(30) if z not in REVEALED]
    first = widget.review_list.item(0)
    qtbot.mouseClick(
        widget.review_list.viewport(),
        Qt.MouseButton.LeftButton,
        pos=widget.review_list.visualItemRect(first).center(),
    )
    assert widget.current_slice() == queue[0]
    viewer.keymap[coerce_keybinding("Shift-N")](viewer)
    assert widget.current_slice() == queue[1]

    # Accept (Shift+A) copies the pseudo-labels of the slice in view and marks it annotated.
    target = queue[1]
    before = labels.data.copy()
    viewer.keymap[coerce_keybinding("Shift-A")](viewer)
    assert np.array_equal(labels.data[target], pseudo.data[target])
    others = [z for z in range(30) if z != target]
    assert np.array_equal(labels.data[others], before[others])
    assert target in widget.session.annotated_slices
    assert target not in widget.review_queue()
    saved = load_project(tmp_path / "project", widget.session.image)  # autosaved on accept
    assert target in saved.annotation.annotated_slices

    # Export: user labels where annotated, pseudo-labels elsewhere, on the source grid.
    qtbot.mouseClick(widget.export_button, Qt.MouseButton.LeftButton)
    out = tmp_path / "project" / "export"
    segmentation = read_volume(out / "example_ct_sm_seg.nii.gz")
    expected = pseudo.data.copy()
    for z in widget.session.annotated_slices:
        expected[z] = labels.data[z]
    assert np.array_equal(segmentation.data, np.transpose(expected, (2, 1, 0)))
    assert np.allclose(segmentation.affine, widget.session.image.affine)
    assert read_volume(out / "example_ct_sm_uncertainty.nii.gz").shape == segmentation.shape
    assert (out / "example_ct_sm_slices.csv").read_text().count("\n") == 31

    # Retrain warm-starts from the last model and reports the agreement on the accepted slice.
    gap = click_train_and_wait(widget, qtbot)
    print(f"largest event-loop gap while retraining: {1000 * gap:.0f} ms")
    assert widget.warm_started
    agreement = widget.session.agreement
    assert agreement is not None and agreement.slices == [target]
    assert "previous model" in widget.agreement_label.text()
    assert widget.session.model_dir == tmp_path / "project" / "model"

    # Restore: wipe the labels, restore the autosave, get them back.
    kept = labels.data.copy()
    labels.data = np.zeros_like(kept)
    assert widget.restore_button.isEnabled()
    qtbot.mouseClick(widget.restore_button, Qt.MouseButton.LeftButton)
    assert np.array_equal(labels.data, kept)
    assert target in widget.session.annotated_slices


@pytest.mark.gui
@pytest.mark.slow
def test_cancel_stops_training_and_leaves_labels(ct_widget, qtbot):
    from qtpy.QtCore import Qt

    viewer, widget = ct_widget
    labels = reveal_liver(viewer, widget)
    kept = labels.data.copy()
    widget.config_overrides = merged(TINY, {"budget": {"max_iters": 1_000_000}})
    widget.budget_spin.setValue(600)
    qtbot.mouseClick(widget.train_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(widget.loss_plot.losses), timeout=120_000)
    asked = time.monotonic()
    qtbot.mouseClick(widget.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.monitor.running, timeout=5000)
    took = time.monotonic() - asked
    print(f"cancel took {took:.2f} s")
    assert took < 2.0
    assert widget.runner.status.value == "stopped"
    assert "stopped" in widget.status_label.text()
    assert widget.train_button.isEnabled() and not widget.cancel_button.isEnabled()
    assert "pseudo-labels" not in viewer.layers
    assert np.array_equal(labels.data, kept)


@pytest.mark.gui
def test_error_is_shown_and_labels_stay(ct_widget, qtbot, monkeypatch):
    from qtpy.QtCore import Qt

    from napari_ssseg.widgets import dock

    shown: list[str] = []
    monkeypatch.setattr(dock, "show_error", shown.append)
    viewer, widget = ct_widget
    labels = widget.new_labels_layer()
    qtbot.mouseClick(widget.train_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(shown), timeout=5000)
    assert "no annotated slice" in shown[0]
    assert not labels.data.any() and "pseudo-labels" not in viewer.layers
    assert widget.train_button.isEnabled()


@pytest.mark.gui
def test_method_combo_offers_main_methods_then_the_advanced_presets(ct_widget):
    from qtpy.QtCore import Qt

    from napari_ssseg.settings.presets import DEFAULT_METHOD, PRESETS, offered_methods
    from napari_ssseg.widgets.training_settings import ADVANCED_HEADER

    _, widget = ct_widget
    combo = widget.method_combo
    main, advanced = offered_methods()
    assert main == ["ssl"] and set(advanced) == set(PRESETS) - {"ssl"}
    items = [combo.itemText(i) for i in range(combo.count())]
    header = items.index(ADVANCED_HEADER)
    # The main choices, a separator, the header (not selectable), then the advanced ones.
    assert items[: len(main)] == main and items[len(main)] == ""
    assert header == len(main) + 1 and items[header + 1 :] == advanced
    assert not combo.model().item(header).isEnabled()
    assert all(combo.model().item(i).isEnabled() for i in range(header + 1, combo.count()))
    assert combo.currentText() == DEFAULT_METHOD
    assert not widget.settings.method_note.isVisibleTo(widget.settings)
    combo.setCurrentText("uncol")
    assert widget.settings.method_note.isVisibleTo(widget.settings)
    assert widget.training_config().method == "uncol"
    # Under the combo what the chosen method measured; its summary as the combo's tooltip.
    assert PRESETS["uncol"].measured[1:] in widget.settings.method_note.text()
    assert PRESETS["uncol"].summary in combo.toolTip()
    tip = combo.itemData(items.index("uncol"), Qt.ItemDataRole.ToolTipRole)
    assert tip == f"{PRESETS['uncol'].summary}: {PRESETS['uncol'].measured}"
    # Foundation model, refinement, pretraining, distillation and the cluster sit under
    # Advanced.
    box = widget.settings.advanced_box
    for control in (
        widget.foundation_combo,
        widget.checkpoint_edit,
        widget.refine_combo,
        widget.pretrain_check,
        widget.distill_check,
        widget.cluster_edit,
        widget.workers_spin,
    ):
        assert box.isAncestorOf(control)
    assert not box.isAncestorOf(combo) and not box.isAncestorOf(widget.budget_spin)
    # Folded away until opened.
    assert not box.isVisibleTo(widget.settings)
    widget.settings.advanced_toggle.setChecked(True)
    assert box.isVisibleTo(widget.settings)


@pytest.mark.gui
def test_foundation_model_and_checkpoint_reach_the_training_settings(ct_widget, tmp_path):
    _, widget = ct_widget
    widget.config_overrides = {}
    config = widget.training_config()
    assert config.foundation.model == "litemedsam"
    assert config.foundation.checkpoint is None
    widget.foundation_combo.setCurrentText("sam_vit_b")
    widget.checkpoint_edit.setText(f"  {tmp_path / 'sam_vit_b.pth'} ")
    config = widget.training_config()
    assert config.foundation.model == "sam_vit_b"
    assert config.foundation.checkpoint == str(tmp_path / "sam_vit_b.pth")
    assert config.prediction.refine is None  # left to the method
    widget.refine_combo.setCurrentText("auto")
    assert widget.training_config().prediction.refine == "auto"
    # The time budget is the spin box's; overrides by section keep the rest of a section.
    widget.budget_spin.setValue(90)
    widget.config_overrides = {"budget": {"max_iters": 7}}
    assert widget.training_config().budget.max_time == 90.0
    assert widget.training_config().budget.max_iters == 7
    widget.config_overrides = {}
    # Pretraining while labelling: off by default, the benchmark's 200 steps when on.
    assert widget.training_config().features.pretrain_steps == 0
    widget.pretrain_check.setChecked(True)
    assert widget.training_config().features.pretrain_steps == 200
    assert widget.training_config().uses_feature_bank
    # Distillation during training: follows the preset (ssl does not distil, uncol does)
    # until ticked or unticked, and stays a valid setting either way.
    assert not widget.distill_check.isChecked()
    assert widget.training_config().features.distill_weight == 0.0
    widget.method_combo.setCurrentText("uncol")
    assert widget.distill_check.isChecked()
    assert widget.training_config().feature_weight("distill") == 1.0
    widget.distill_check.setChecked(False)
    assert widget.training_config().feature_weight("distill") == 0.0
    widget.method_combo.setCurrentText("ssl")
    widget.distill_check.setChecked(True)
    config = widget.training_config()
    assert config.method == "ssl" and config.uses_feature_terms


@pytest.mark.gui
def test_loss_plot_draws_loss_and_agreement(qtbot):
    from napari_ssseg.widgets.loss_plot import LossPlot

    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(300, 80)
    plot.show()
    for step, (loss, agreement) in enumerate([(1.2, 0.1), (0.8, 0.5), (0.4, 0.9)], start=1):
        plot.add(step * 10, loss)
        plot.add_agreement(step * 10, agreement)
    image = plot.grab().toImage()
    green = orange = 0
    for x in range(0, 300, 2):
        for y in range(0, 80, 2):
            colour = image.pixelColor(x, y)
            green += colour.green() > 150 and colour.red() < 150
            orange += colour.red() > 200 and 120 < colour.green() < 200 and colour.blue() < 120
    assert green > 5 and orange > 5
    plot.clear()
    assert not plot.agreement and not plot.losses


# -- a folder of volumes as one project ---------------------------------------------------------


@pytest.fixture
def ct_folder(tmp_path):
    """Two CT volumes in a folder: ``ct_a`` with the liver on REVEALED slices, ``ct_b``
    without labels (the unlabelled pool)."""
    from napari_ssseg.io.nifti import read_labels, write_labels
    from napari_ssseg.sample_data import load_sample

    case = load_sample("ct")
    volume = read_volume(case.image)
    reference = read_labels(case.labels, like=volume)
    folder = tmp_path / "study"
    folder.mkdir()
    for name in ("ct_a", "ct_b"):
        (folder / f"{name}.nii.gz").write_bytes(case.image.read_bytes())
    revealed = np.zeros_like(reference)
    for z in REVEALED:
        revealed[:, :, z] = reference[:, :, z] == LIVER
    write_labels(folder / "ct_a_seg.nii.gz", revealed, volume)
    return folder


@pytest.mark.gui
@pytest.mark.slow
def test_folder_project_trains_all_volumes_and_reviews_each(
    make_napari_viewer, runner, ct_folder, qtbot
):
    from qtpy.QtCore import Qt

    from napari_ssseg.project_store import default_project_dir
    from napari_ssseg.widgets.dock import SsSegWidget

    viewer = make_napari_viewer(show=True)
    viewer.open(str(ct_folder), plugin="napari-ssseg")
    widget = SsSegWidget(viewer, runner=runner)
    viewer.window.add_dock_widget(widget, name="napari-ssseg")
    widget.config_overrides = dict(TINY)
    widget.image_combo.setCurrentText("ct_a")
    widget.class_edit.setText("liver")
    try:
        assert widget.labels_combo.currentText() == "ct_a labels"
        lines = [widget.volume_list.item(r) for r in range(widget.volume_list.count())]
        assert [item.text() for item in lines] == [
            "ct_a: 3 annotated slices  (current)",
            "ct_b: 0 annotated slices",
        ]
        assert all(item.checkState() == Qt.CheckState.Checked for item in lines)
        assert viewer.layers["ct_a"].visible and not viewer.layers["ct_b"].visible

        click_train_and_wait(widget, qtbot)
        assert widget.runner.status.value == "done"
        assert widget.runner.result().summary["volumes"] == ["ct_a", "ct_b"]
        a_prediction = widget.session.prediction.labels
        assert a_prediction.any()

        # Work on the unlabelled volume: its own pseudo-labels and review queue appear.
        qtbot.mouseClick(
            widget.volume_list.viewport(),
            Qt.MouseButton.LeftButton,
            pos=widget.volume_list.visualItemRect(widget.volume_list.item(1)).center(),
        )
        assert widget.image_combo.currentText() == "ct_b"
        assert widget.labels_combo.currentText() == "ct_b labels"
        assert viewer.layers["ct_b"].visible and not viewer.layers["ct_a"].visible
        b_session = widget.session
        assert b_session.prediction is not None and b_session.image.name == "ct_b"
        pseudo = viewer.layers["pseudo-labels"].data
        assert np.array_equal(pseudo, np.transpose(b_session.prediction.labels, (2, 1, 0)))
        assert sorted(widget.review_queue()) == list(range(30))

        target = widget.next_review()
        assert widget.accept_current() == target
        b_labels = viewer.layers["ct_b labels"].data
        assert np.array_equal(b_labels[target], pseudo[target])
        saved = load_project(default_project_dir(b_session.image), b_session.image)
        assert saved.annotation.annotated_slices == [target]
        assert widget.volume_list.item(1).text() == "ct_b: 1 annotated slice  (current)"
    finally:
        widget.shutdown()


@pytest.mark.gui
@pytest.mark.slow
def test_foundation_teacher_trains_from_the_widget(ct_widget, qtbot, tmp_path):
    """The sc-sam preset runs from the widget on the bundled LiteMedSAM weights: its loss
    term is reported and result layers arrive. Picking it embeds the volume's slices in the
    background while the user labels, and the run then finds every embedding it needs."""
    viewer, widget = ct_widget
    reveal_liver(viewer, widget)
    widget.config_overrides = merged(
        TINY,
        {
            "sam": {"slices": 2, "refresh": 10},
            "foundation": {"embedding_cache": str(tmp_path / "embeddings")},
            # 30 steps teach the liver only roughly: no gate.
            "budget": {"teacher_start": 0.1, "gate_dice": 0.0},
        },
    )
    widget.method_combo.setCurrentText("sc-sam")
    widget.budget_spin.setValue(600)  # the 30 steps, not the clock, end the run
    depth = viewer.layers["example_ct_sm"].data.shape[0]
    qtbot.waitUntil(lambda: "slices ready" in widget.embedding_label.text(), timeout=240_000)
    assert widget.embedding_label.text().startswith(f"{depth} slices ready"), (
        widget.embedding_label.text()
    )
    embedded = set((tmp_path / "embeddings").rglob("*.safetensors"))
    assert len(embedded) == depth
    assert not widget.prepare_embeddings()  # done for this volume and model: not again
    seen: set[str] = set()
    widget.monitor.progressed.connect(lambda event: seen.update(event.losses))
    click_train_and_wait(widget, qtbot, timeout_s=300)
    assert widget.runner.status.value == "done", widget.status_label.text()
    print(f"sc-sam click to result layers: {widget.last_click_to_result:.1f} s")
    assert "sam" in seen
    assert "pseudo-labels" in viewer.layers
    # Predicted with refine auto (the method's default); its choice is shown.
    assert "refine auto (litemedsam" in widget.status_label.text(), widget.status_label.text()
    # Training and the refined prediction embedded nothing the background job had not.
    assert set((tmp_path / "embeddings").rglob("*.safetensors")) == embedded


@pytest.mark.gui
@pytest.mark.slow
def test_pretraining_while_labelling_reaches_the_run(ct_widget, qtbot, tmp_path):
    """Ticking Pretrain makes the background job embed the bank's slices and pretrain the
    network on them; Train then starts from that network instead of pretraining itself."""
    viewer, widget = ct_widget
    reveal_liver(viewer, widget)
    widget.config_overrides = merged(
        TINY,
        {
            "features": {"pretrain_steps": 6},  # the tick's 200 steps, made small
            "foundation": {"embedding_cache": str(tmp_path / "embeddings")},
        },
    )
    widget.budget_spin.setValue(600)  # the steps, not the clock, end the run
    widget.pretrain_check.setChecked(True)
    qtbot.waitUntil(lambda: "network pretrained" in widget.embedding_label.text(), timeout=240_000)
    assert widget.embedding_label.text().endswith("; network pretrained (6 steps)")
    assert len(list((tmp_path / "embeddings" / "students").glob("*.safetensors"))) == 1
    assert not widget.prepare_embeddings()  # made for this volume and settings: not again
    seen: list = []
    widget.monitor.progressed.connect(seen.append)
    click_train_and_wait(widget, qtbot, timeout_s=300)
    assert widget.runner.status.value == "done", widget.status_label.text()
    assert not any("pretrain" in event.losses for event in seen)  # no pretraining in the run
    assert widget.runner.result().summary["pretrained"] == 6


@pytest.mark.gui
def test_class_on_no_annotated_slice_is_warned_before_training(ct_widget, qtbot, monkeypatch):
    from qtpy.QtCore import Qt

    from napari_ssseg.widgets import dock

    warned: list[str] = []
    monkeypatch.setattr(dock, "show_warning", warned.append)
    viewer, widget = ct_widget
    reveal_liver(viewer, widget)
    widget.class_edit.setText("liver, spleen")
    qtbot.mouseClick(widget.train_button, Qt.MouseButton.LeftButton)
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.monitor.running, timeout=20_000)
    assert len(warned) == 1 and "'spleen' (2) appears on no annotated slice" in warned[0]


@pytest.mark.gui
def test_unreachable_cluster_is_an_error_and_napari_keeps_going(ct_widget, qtbot, monkeypatch):
    """With a cluster address the job goes to Ray; one nobody answers at ends in a
    notification, off the Qt thread, with the labels untouched (no Ray cluster is started)."""
    pytest.importorskip("ray")
    from qtpy.QtCore import Qt

    from napari_ssseg.widgets import dock

    shown: list[str] = []
    monkeypatch.setattr(dock, "show_error", shown.append)
    viewer, widget = ct_widget
    labels = reveal_liver(viewer, widget)
    kept = labels.data.copy()
    widget.cluster_edit.setText("127.0.0.1:1")
    widget.workers_spin.setValue(2)
    qtbot.mouseClick(widget.train_button, Qt.MouseButton.LeftButton)
    assert not widget.train_button.isEnabled()
    qtbot.waitUntil(lambda: bool(shown), timeout=20_000)
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in shown[0]
    assert widget.train_button.isEnabled() and np.array_equal(labels.data, kept)
    assert "pseudo-labels" not in viewer.layers
