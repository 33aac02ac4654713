"""Loading teachers: bundled, local folder or hub; safetensors weights only; stock transformers classes."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelLoadError
from .model_ref import BUNDLED_MODELS, parse_model_ref

log = logging.getLogger(__name__)

# Encoders whose stock classes we drive (layer list, attention outputs, sequence classification).
SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra")
_HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "merges.txt", "vocab.*"]


@dataclass
class LoadedTeacher:
    model: object  # a transformers *ForSequenceClassification
    tokenizer: object
    source_dir: Path
    has_task_head: bool  # False: the classifier is new and stage 0 must fine-tune it


def resolve_model_dir(ref: str) -> Path:
    """A local folder holding the model: the bundled package, the folder itself, or a hub snapshot."""
    parsed = parse_model_ref(ref)
    if parsed.kind == "bundled":
        package = importlib.import_module(BUNDLED_MODELS[parsed.value])
        return Path(package.MODEL_DIR)
    if parsed.kind == "local":
        return Path(parsed.value)
    return _download_from_hub(parsed.value)


def _download_from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_FILES))
    except RepositoryNotFoundError as exc:
        raise ModelLoadError(f"{repo_id}: no such model on the Hugging Face hub (or it is private)") from exc
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise ModelLoadError(
            f"{repo_id}: the Hugging Face hub is unreachable and the model is not cached "
            f"({type(exc).__name__}); pass a local model folder instead"
        ) from exc


def check_supported(model_dir: Path):
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a model we can read"
        raise ModelLoadError(f"{model_dir}: unreadable config.json ({exc})") from exc
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelLoadError(
            f"model type {config.model_type!r} is not supported; supported encoders: "
            f"{', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    if not any(model_dir.glob("*.safetensors")):
        raise ModelLoadError(
            f"{model_dir}: no .safetensors weights (pickled .bin weights are refused for safety)"
        )
    return config


def load_teacher(ref: str, *, num_labels: int, regression: bool) -> LoadedTeacher:
    """Load the model with a sequence-classification head sized for the task.

    A missing or mis-sized head is created fresh and reported, so the pipeline fine-tunes it first.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model_dir = resolve_model_dir(ref)
    config = check_supported(model_dir)
    head_matches = config.num_labels == num_labels
    config.num_labels = num_labels
    config.problem_type = "regression" if regression else "single_label_classification"
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            model_dir, config=config, use_safetensors=True, trust_remote_code=False,
            attn_implementation="eager", output_loading_info=True, ignore_mismatched_sizes=True,
        )
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - surface one actionable message
        raise ModelLoadError(f"{ref}: cannot load model ({type(exc).__name__}: {exc})") from exc
    fresh = list(info.get("missing_keys", [])) + [m[0] if isinstance(m, tuple) else m
                                                   for m in info.get("mismatched_keys", [])]
    encoder_missing = [k for k in fresh if not _is_head_key(k)]
    if encoder_missing:
        raise ModelLoadError(
            f"{ref}: weights are missing encoder tensors ({', '.join(encoder_missing[:3])}...); "
            "is this the right model?"
        )
    has_head = head_matches and not any(_is_head_key(k) for k in fresh)
    log.info("loaded %s from %s (task head %s)", ref, model_dir, "present" if has_head else "new")
    return LoadedTeacher(model, tokenizer, model_dir, has_head)


def _is_head_key(key: str) -> bool:
    return key.startswith(("classifier", "pre_classifier", "pooler")) or ".pooler." in key
