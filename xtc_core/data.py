"""Load a task's train and dev rows from a GLUE folder, the Hugging Face hub, or user files. Torch-free.

Hub access (``datasets``) is imported only when it is actually used: the service and most runs read a
local GLUE folder or uploaded files, and must not pay for (or depend on) the hub client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import DataSource
from .errors import ConfigError, DataError
from .tabular import Example, TaskData, read_glue_file, read_user_file
from .tasks import TaskSpec, get_task, normalize_task_name

HUB_DATASET = "nyu-mll/glue"
USER_TASK_NAME = "custom"


def load_task_data(source: DataSource, *, need_train: bool = True) -> TaskData:
    """Train and dev examples for a run; a ConfigError or DataError says what to fix.

    ``need_train=False`` (evaluation) skips a GLUE folder's training file: it is neither read nor
    required, so e.g. QNLI can be evaluated from a folder holding only dev.tsv."""
    source.validate()
    has_files = bool(source.train_file or source.dev_file)
    if has_files and not (source.train_file and source.dev_file):
        raise ConfigError("give both a train file and a dev file")
    if has_files and bool(source.text_column) != bool(source.label_column):
        raise ConfigError("a column mapping needs both a text column and a label column")
    if has_files and source.text_column:
        return _load_user_files(source)
    assert source.task is not None  # validate(): no task means user files with a mapping
    spec = get_task(source.task)
    if has_files:
        # A task name with files but no column mapping: the files are that task's official TSVs.
        return _task_data(
            spec, read_glue_file(spec, source.train_file), {"dev": read_glue_file(spec, source.dev_file)}
        )
    if source.glue_dir is not None:
        return _load_glue_dir(spec, Path(source.glue_dir), need_train)
    return _load_glue_hub(spec)


def _task_data(spec: TaskSpec, train: list[Example], dev: dict[str, list[Example]]) -> TaskData:
    return TaskData(name=spec.name, labels=spec.labels, metrics=spec.metrics, train=train, dev=dev)


def _split_name(dev_file: str) -> str:
    return Path(dev_file).stem  # "dev.tsv" -> "dev"; MNLI: "dev_matched", "dev_mismatched"


# --------------------------------------------------------------------------- GLUE folder


def _task_folder(root: Path, spec: TaskSpec) -> Path:
    """The task's folder: the official name ("SST-2"), or any spelling of it ("sst2", "sst_2")."""
    if not root.is_dir():
        raise ConfigError(f"GLUE folder not found: {root}")
    exact = root / spec.folder
    if exact.is_dir():
        return exact
    for child in sorted(root.iterdir()):
        if child.is_dir() and normalize_task_name(child.name) == spec.name:
            return child
    raise DataError(
        str(exact), f"no {spec.folder} folder in the GLUE folder {root} (expected {exact})"
    )


def _glue_file(folder: Path, name: str, spec: TaskSpec) -> Path:
    path = folder / name
    if not path.is_file():
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        raise DataError(
            str(path),
            f"file not found: the {spec.folder} folder has no {name} "
            f"(it holds: {', '.join(present) or 'nothing'})",
        )
    return path


def _load_glue_dir(spec: TaskSpec, root: Path, need_train: bool = True) -> TaskData:
    folder = _task_folder(root, spec)
    # Check every file exists before reading any, so a missing dev file is not found after a long read.
    train_path = _glue_file(folder, spec.train_file, spec) if need_train else None
    dev_paths = {_split_name(name): _glue_file(folder, name, spec) for name in spec.dev_files}
    train = read_glue_file(spec, train_path) if train_path else []
    dev = {split: read_glue_file(spec, path) for split, path in dev_paths.items()}
    return _task_data(spec, train, dev)


# --------------------------------------------------------------------------- Hugging Face hub


def _hub_rows(spec: TaskSpec, rows: Any, where: str) -> list[Example]:
    """Hub rows -> examples. The hub's integer labels are the indices of our label lists.

    (Checked per task: binary tasks are 0/1 like the TSVs; MNLI entailment/neutral/contradiction and
    QNLI/RTE entailment/not_entailment are in the same order as TaskSpec.labels.)
    """
    examples = []
    for row in rows:
        label = row["label"]
        if spec.labels is not None and not 0 <= int(label) < len(spec.labels):
            # -1 marks an unlabelled (test) row: never valid for training or evaluation.
            raise DataError(where, f"unexpected label {label!r} in the hub data for {spec.name}")
        text = row[spec.hub_text]
        pair = row[spec.hub_text_pair] if spec.hub_text_pair else None
        examples.append(Example(text, pair, float(label) if spec.labels is None else int(label)))
    return examples


def _load_glue_hub(spec: TaskSpec) -> TaskData:
    where = f"hf://datasets/{HUB_DATASET} ({spec.hub_config})"
    advice = "pass a GLUE folder (glue_dir) instead"
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            f"the `datasets` package is not installed, so the hub cannot be used; {advice}"
        ) from None
    try:
        loaded = datasets.load_dataset(HUB_DATASET, spec.hub_config)
    except Exception as exc:  # the hub client raises many unrelated types (offline, HTTP, cache...)
        raise DataError(
            where, f"the Hugging Face hub is unreachable or failed ({type(exc).__name__}: {exc}); {advice}"
        ) from exc
    try:
        train = _hub_rows(spec, loaded["train"], where)
        dev = {
            _split_name(name): _hub_rows(spec, loaded[split], where)
            for name, split in zip(spec.dev_files, spec.hub_dev_splits, strict=True)
        }
    except KeyError as exc:
        raise DataError(where, f"the hub data has no split or column {exc}; {advice}") from None
    return _task_data(spec, train, dev)


# --------------------------------------------------------------------------- user files


def _user_metrics(labels: tuple[str, ...] | None) -> tuple[str, ...]:
    if labels is None:
        return ("pearson", "spearman")
    # F1 needs a positive class: label index 1, which the sorted order makes "1", "pos..", "true", "yes".
    return ("accuracy", "f1") if len(labels) == 2 else ("accuracy",)


def _load_user_files(source: DataSource) -> TaskData:
    columns = {
        "text_column": source.text_column,
        "label_column": source.label_column,
        "text_pair_column": source.text_pair_column,
    }
    train, labels = read_user_file(source.train_file, regression=source.regression, **columns)
    if labels is not None and len(labels) < 2:
        raise DataError(
            str(source.train_file),
            f"only one distinct label ({labels[0]!r}) in column {source.label_column!r}; "
            "classification needs at least two",
        )
    # Dev is read against the train labels: a dev label the model cannot predict is an error.
    dev, _ = read_user_file(source.dev_file, regression=source.regression, labels=labels, **columns)
    name = normalize_task_name(source.task) if source.task else USER_TASK_NAME
    return TaskData(name=name, labels=labels, metrics=_user_metrics(labels), train=train, dev={"dev": dev})
