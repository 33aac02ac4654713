"""Reuse of finished training stages across runs, keyed by content.

Stage 0 (the fine-tuned teacher) depends only on the model, the data and stage 0's schedule; stage 1
(the layer-reduced student) adds the kept layers and stage 1's schedule. Neither depends on the bit
width, so a sweep over bit widths and depths trains each of them once and every later run with the
same inputs loads them instead. A key hashes everything a stage's weights depend on (the model's
files, the training rows, the stage's settings and seed, and the key of the stage it starts from), so
a hit can never load weights that mean something else.

Where entries live is the caller's choice: :class:`LocalStageStore` is a folder (the library and the
`xtc sweep` command); the service stores them in its artifact storage. Either way, ``lock(key)`` makes
concurrent runs that need the same stage train it once: the second waits, then loads it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from . import __version__
from .config import TrainingConfig
from .progress import ProgressCallback, ProgressEvent

log = logging.getLogger(__name__)

# Bump when what a stored entry holds changes meaning (e.g. a different state-dict layout).
# 2: an entry is {"state_dict", "cost"}: the steps and seconds its training took, which a run that
# loads it instead reports as saved.
CACHE_FORMAT = 2

# The code that trains stages 0 and 1: any change to it (a new loss, a different data order...) makes
# new keys, so a recipe change never reuses weights trained by the old recipe.
_RECIPE_MODULES = ("pipeline.py", "trainer.py", "distill.py", "student.py", "batches.py", "models.py",
                   "quant.py", "evaluate.py", "metrics.py")


def _recipe_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in _RECIPE_MODULES:
        path = Path(__file__).with_name(name)
        if path.exists():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


RECIPE = _recipe_fingerprint()

# Training fields that cannot change a stage's result. Anything not listed counts, so a new recipe
# option added later invalidates old entries rather than silently reusing them.
_IRRELEVANT: dict[str, set[str]] = {
    "finetune_teacher": {"reduction_steps", "quant_steps", "lr", "kd_logits", "kd_hidden", "kd_attention",
                         "temperature", "checkpoint_every"},
    "layer_reduction": {"finetune_steps", "finetune_lr", "quant_steps", "checkpoint_every"},
}
CACHEABLE_STAGES = tuple(_IRRELEVANT)


class StageStore(Protocol):
    """Where finished stages are kept: a folder, object storage..."""

    def fetch(self, key: str, dest: Path) -> bool:
        """Copy the entry to ``dest`` and return True, or return False when there is none."""

    def store(self, key: str, src: Path) -> None:
        """Keep ``src`` as the entry for ``key`` (atomically: readers see all of it or nothing)."""

    def lock(self, key: str) -> AbstractContextManager[None]:
        """Held while a run checks for, trains and stores ``key``."""


class LocalStageStore:
    """A folder of ``<key>.pt`` files, locked per key with ``flock`` (processes on one machine)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def fetch(self, key: str, dest: Path) -> bool:
        path = self._path(key)
        if not path.exists():
            return False
        shutil.copyfile(path, dest)
        return True

    def store(self, key: str, src: Path) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self._path(key).with_suffix(f".{os.getpid()}.part")
        shutil.copyfile(src, tmp)
        tmp.replace(self._path(key))

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        # flock locks belong to the open file, so two threads of one process exclude each other too;
        # the kernel releases the lock if the process dies.
        with open(self.root / f"{key}.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _sha256_file(path: Path, digest: Any) -> None:
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)


def model_fingerprint(model_dir: str | Path) -> str:
    """Hash of every file of the model folder (weights, config, tokenizer), by name and content."""
    root = Path(model_dir)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(".") or "/." in rel or path.suffix in (".py", ".pyc"):
            continue  # package code and caches beside the weights do not change the model
        digest.update(rel.encode() + b"\0")
        _sha256_file(path, digest)
    return digest.hexdigest()


def data_fingerprint(task_name: str, labels: Any, train_rows: list, select_rows: list) -> str:
    """Hash of the rows a stage trains on and selects its best checkpoint with."""
    digest = hashlib.sha256(json.dumps([task_name, list(labels) if labels else None]).encode())
    for rows in (train_rows, select_rows):
        for row in rows:
            digest.update(json.dumps(dataclasses.astuple(row), default=str).encode())
            digest.update(b"\n")
        digest.update(b"\0")
    return digest.hexdigest()


def stage_key(stage: str, *, index: int, model: str, data: str, training: TrainingConfig,
              parent: str | None, extra: dict[str, Any] | None = None) -> str:
    fields = {k: v for k, v in dataclasses.asdict(training).items() if k not in _IRRELEVANT[stage]}
    material = {"format": CACHE_FORMAT, "library": __version__, "recipe": RECIPE, "stage": stage,
                "index": index, "model": model, "data": data, "training": fields, "parent": parent,
                "extra": extra or {}}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


@dataclasses.dataclass
class StageCache:
    """The pipeline's side of reuse: keys of this run's stages, and what happened to each."""

    store: StageStore
    model: str  # model_fingerprint
    data: str  # data_fingerprint
    training: TrainingConfig
    on_progress: ProgressCallback | None = None
    outcomes: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    _last_key: str | None = None

    @classmethod
    def for_run(cls, store: StageStore, model_dir: Path, task: Any, train_rows: list, select_rows: list,
                training: TrainingConfig, on_progress: ProgressCallback | None = None) -> StageCache:
        return cls(store, model_fingerprint(model_dir),
                   data_fingerprint(task.name, task.labels, train_rows, select_rows), training, on_progress)

    def key(self, stage: Any, extra: dict[str, Any]) -> str:
        """The stage's key. Call it for every cacheable stage in order, even one resumed from a work
        folder: keys chain (each includes the previous cacheable stage's key)."""
        key = stage_key(stage.name, index=stage.index, model=self.model, data=self.data,
                        training=self.training, parent=self._last_key, extra=extra)
        self._last_key = key
        return key

    def run(self, stage: Any, key: str, load: Callable[[dict], None], train: Callable[[], Any],
            state: Callable[[], dict], scratch: Path) -> Any:
        """Load the stage's weights (a state dict) from the store, or train the stage and store them with
        its cost. Returns train()'s result (steps and seconds), or None when the stage was reused."""
        import torch

        entry = scratch / f"{stage.name}.cache.pt"
        with self.store.lock(key):
            if self.store.fetch(key, entry):
                payload = torch.load(entry, map_location="cpu", weights_only=True)
                entry.unlink(missing_ok=True)
                self._announce(stage, key, reused=True, cost=payload["cost"])
                load(payload["state_dict"])
                return None
            self._announce(stage, key, reused=False)
            result = train()
            cost = {"steps": int(result.steps), "seconds": round(float(result.seconds), 2)}
            torch.save({"state_dict": state(), "cost": cost}, entry)
            self.store.store(key, entry)
            entry.unlink(missing_ok=True)
        return result

    def _announce(self, stage: Any, key: str, *, reused: bool, cost: dict | None = None) -> None:
        saved = {"saved_steps": cost["steps"], "saved_seconds": cost["seconds"]} if cost else {}
        self.outcomes[stage.name] = {"cache_key": key, "reused": reused, **saved}
        log.info("stage %s: %s (key %s)", stage.name, "reused from the stage cache" if reused else
                 "not cached; training it", key[:12])
        if self.on_progress:
            # total=0: an announcement, not a step; it is the stage's first event, so throttled
            # listeners (the service's progress writer) always record it. The metrics say what
            # happened (and, on a hit, what training it saved), so callers can count reuse.
            self.on_progress(ProgressEvent(
                stage.name, 0, 0, metrics={"stage_cache": "hit" if reused else "miss", "cache_key": key,
                                           **saved},
                message=(f"reused from the stage cache (saves {cost['steps']} steps, {cost['seconds']:.0f} s)"
                         if reused else "not in the stage cache; training"),
                stage_index=stage.index, num_stages=stage.num_stages))
