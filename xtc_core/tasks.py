"""GLUE task table: file layout, columns, labels and official metric of each task. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Column:
    """A TSV column, by header name, or by 0-based position for header-less files (CoLA)."""

    name: str | None = None
    index: int | None = None


class LabelSchema:
    """What a task predicts: class labels (None: a regression target) and its metrics, main first."""

    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def main_metric(self) -> str:
        return self.metrics[0]


@dataclass(frozen=True)
class TaskSpec(LabelSchema):
    name: str  # canonical lower-case name: "sst2"
    folder: str  # folder in the GLUE distribution: "SST-2"
    train_file: str
    dev_files: tuple[str, ...]  # MNLI has matched and mismatched dev sets
    text: Column
    text_pair: Column | None
    label: Column
    labels: tuple[str, ...] | None  # None: regression (STS-B)
    metrics: tuple[str, ...]  # official metrics, main one first
    has_header: bool = True
    hub_config: str = ""
    hub_text: str = "sentence"
    hub_text_pair: str | None = None
    hub_dev_splits: tuple[str, ...] = ("validation",)


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")

TASKS: dict[str, TaskSpec] = {
    "cola": TaskSpec(
        "cola", "CoLA", "train.tsv", ("dev.tsv",), text=Column(index=3), text_pair=None,
        label=Column(index=1), labels=_BINARY, metrics=("matthews_corr",), has_header=False,
        hub_config="cola",
    ),
    "sst2": TaskSpec(
        "sst2", "SST-2", "train.tsv", ("dev.tsv",), text=Column("sentence"), text_pair=None,
        label=Column("label"), labels=_BINARY, metrics=("accuracy",), hub_config="sst2",
    ),
    "mrpc": TaskSpec(
        "mrpc", "MRPC", "train.tsv", ("dev.tsv",), text=Column("#1 String"),
        text_pair=Column("#2 String"), label=Column("Quality"), labels=_BINARY,
        metrics=("f1", "accuracy"), hub_config="mrpc", hub_text="sentence1", hub_text_pair="sentence2",
    ),
    "stsb": TaskSpec(
        "stsb", "STS-B", "train.tsv", ("dev.tsv",), text=Column("sentence1"),
        text_pair=Column("sentence2"), label=Column("score"), labels=None,
        metrics=("pearson", "spearman"), hub_config="stsb", hub_text="sentence1",
        hub_text_pair="sentence2",
    ),
    "qqp": TaskSpec(
        "qqp", "QQP", "train.tsv", ("dev.tsv",), text=Column("question1"), text_pair=Column("question2"),
        label=Column("is_duplicate"), labels=_BINARY, metrics=("f1", "accuracy"), hub_config="qqp",
        hub_text="question1", hub_text_pair="question2",
    ),
    "mnli": TaskSpec(
        "mnli", "MNLI", "train.tsv", ("dev_matched.tsv", "dev_mismatched.tsv"),
        text=Column("sentence1"), text_pair=Column("sentence2"), label=Column("gold_label"),
        labels=("entailment", "neutral", "contradiction"), metrics=("accuracy",), hub_config="mnli",
        hub_text="premise", hub_text_pair="hypothesis",
        hub_dev_splits=("validation_matched", "validation_mismatched"),
    ),
    "qnli": TaskSpec(
        "qnli", "QNLI", "train.tsv", ("dev.tsv",), text=Column("question"), text_pair=Column("sentence"),
        label=Column("label"), labels=_NLI2, metrics=("accuracy",), hub_config="qnli",
        hub_text="question", hub_text_pair="sentence",
    ),
    "rte": TaskSpec(
        "rte", "RTE", "train.tsv", ("dev.tsv",), text=Column("sentence1"), text_pair=Column("sentence2"),
        label=Column("label"), labels=_NLI2, metrics=("accuracy",), hub_config="rte",
        hub_text="sentence1", hub_text_pair="sentence2",
    ),
    "wnli": TaskSpec(
        "wnli", "WNLI", "train.tsv", ("dev.tsv",), text=Column("sentence1"), text_pair=Column("sentence2"),
        label=Column("label"), labels=_BINARY, metrics=("accuracy",), hub_config="wnli",
        hub_text="sentence1", hub_text_pair="sentence2",
    ),
}


def normalize_task_name(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


def get_task(name: str) -> TaskSpec:
    """Resolve any common spelling ("SST-2", "sst2", "sts_b") to its spec, or a clear error."""
    key = normalize_task_name(name)
    if key not in TASKS:
        raise ConfigError(f"unknown GLUE task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[key]
