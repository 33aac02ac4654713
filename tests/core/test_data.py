"""load_task_data: GLUE folder, Hugging Face hub (faked and offline), user files."""

from __future__ import annotations

import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from xtc_core.config import DataSource
from xtc_core.data import load_task_data
from xtc_core.errors import ConfigError, DataError
from xtc_core.tabular import Example

# task -> (train rows, {dev split: rows}) for every task fully present in the shared GLUE folder.
GLUE_COUNTS = {
    "cola": (8551, {"dev": 1043}),
    "mrpc": (3668, {"dev": 408}),
    "stsb": (5749, {"dev": 1500}),
    "rte": (2490, {"dev": 277}),
    "wnli": (635, {"dev": 71}),
}


@pytest.fixture(scope="module")
def sst2(glue_dir):
    return load_task_data(DataSource(task="SST-2", glue_dir=str(glue_dir)))


def test_sst2_from_glue_folder(sst2):
    assert sst2.name == "sst2"
    assert (len(sst2.train), {k: len(v) for k, v in sst2.dev.items()}) == (67349, {"dev": 872})
    assert sst2.dev["dev"][0] == Example("it 's a charming and often affecting journey .", None, 1)
    assert (sst2.labels, sst2.metrics, sst2.num_labels) == (("0", "1"), ("accuracy",), 2)


@pytest.mark.parametrize("task", sorted(GLUE_COUNTS))
def test_glue_tasks_from_folder(glue_dir, task):
    data = load_task_data(DataSource(task=task, glue_dir=str(glue_dir)))
    train_rows, dev_rows = GLUE_COUNTS[task]
    assert len(data.train) == train_rows
    assert {split: len(rows) for split, rows in data.dev.items()} == dev_rows


def test_stsb_is_regression(glue_dir):
    data = load_task_data(DataSource(task="sts-b", glue_dir=str(glue_dir)))
    assert data.is_regression and data.num_labels == 1 and data.main_metric == "pearson"
    assert all(0.0 <= e.label <= 5.0 for e in data.dev["dev"])


def test_missing_qnli_train_is_a_clear_error(glue_dir):
    with pytest.raises(DataError) as info:
        load_task_data(DataSource(task="qnli", glue_dir=str(glue_dir)))
    message = str(info.value)
    assert "QNLI" in message and "train.tsv" in message and "file not found" in message
    assert "dev.tsv" in message  # says what the folder does hold


def test_missing_glue_folder_and_task_folder(tmp_path):
    with pytest.raises(ConfigError, match="GLUE folder not found"):
        load_task_data(DataSource(task="rte", glue_dir=str(tmp_path / "nowhere")))
    with pytest.raises(DataError, match="no RTE folder"):
        load_task_data(DataSource(task="rte", glue_dir=str(tmp_path)))


def test_unknown_task_is_a_config_error(glue_dir):
    with pytest.raises(ConfigError, match="unknown GLUE task"):
        load_task_data(DataSource(task="squad", glue_dir=str(glue_dir)))


def test_task_folder_in_another_spelling(glue_dir, tmp_path):
    shutil.copytree(glue_dir / "WNLI", tmp_path / "wnli")
    data = load_task_data(DataSource(task="WNLI", glue_dir=str(tmp_path)))
    assert len(data.dev["dev"]) == 71


def test_mnli_has_matched_and_mismatched_dev_splits(tmp_path):
    folder = tmp_path / "MNLI"
    folder.mkdir()
    header = "index\tpromptID\tsentence1\tsentence2\tgold_label\n"
    (folder / "train.tsv").write_text(header + "0\t1\tA dog runs.\tAn animal moves.\tentailment\n")
    (folder / "dev_matched.tsv").write_text(header + "0\t2\tIt rains.\tIt is dry.\tcontradiction\n")
    (folder / "dev_mismatched.tsv").write_text(header + "0\t3\tHe ate.\tHe was hungry.\tneutral\n")
    data = load_task_data(DataSource(task="mnli", glue_dir=str(tmp_path)))
    assert set(data.dev) == {"dev_matched", "dev_mismatched"}
    assert [data.dev[s][0].label for s in ("dev_matched", "dev_mismatched")] == [2, 1]
    assert data.train[0] == Example("A dog runs.", "An animal moves.", 0)


def test_glue_format_files_named_directly(glue_dir):
    source = DataSource(
        task="rte", train_file=str(glue_dir / "RTE" / "dev.tsv"), dev_file=str(glue_dir / "RTE" / "dev.tsv")
    )
    data = load_task_data(source)
    assert len(data.train) == len(data.dev["dev"]) == 277


# --------------------------------------------------------------------------- hub


def fake_datasets(monkeypatch, load_dataset) -> list:
    calls = []

    def recording(*args, **kwargs):
        calls.append(args)
        return load_dataset(*args, **kwargs)

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=recording))
    return calls


def test_hub_rows_are_mapped_to_examples(monkeypatch):
    splits = {
        "train": [{"premise": "p1", "hypothesis": "h1", "label": 2}],
        "validation_matched": [{"premise": "p2", "hypothesis": "h2", "label": 0}],
        "validation_mismatched": [{"premise": "p3", "hypothesis": "h3", "label": 1}],
    }
    calls = fake_datasets(monkeypatch, lambda *args: splits)
    data = load_task_data(DataSource(task="mnli"))
    assert calls == [("nyu-mll/glue", "mnli")]
    assert data.train == [Example("p1", "h1", 2)]
    assert data.dev == {"dev_matched": [Example("p2", "h2", 0)], "dev_mismatched": [Example("p3", "h3", 1)]}


def test_hub_regression_and_test_rows(monkeypatch):
    fake_datasets(monkeypatch, lambda *args: {
        "train": [{"sentence1": "a", "sentence2": "b", "label": 3.2}],
        "validation": [{"sentence1": "c", "sentence2": "d", "label": 1}],
    })
    data = load_task_data(DataSource(task="stsb"))
    assert data.train[0].label == 3.2 and isinstance(data.dev["dev"][0].label, float)
    # Unlabelled rows (label -1, as in the hub's test splits) must not slip into training.
    fake_datasets(monkeypatch, lambda *args: {"train": [{"sentence": "x", "label": -1}], "validation": []})
    with pytest.raises(DataError, match="unexpected label -1"):
        load_task_data(DataSource(task="sst2"))


def test_hub_failure_says_to_pass_a_glue_folder(monkeypatch):
    def offline(*args):
        raise ConnectionError("no route to host")

    fake_datasets(monkeypatch, offline)
    with pytest.raises(DataError) as info:
        load_task_data(DataSource(task="rte"))
    message = str(info.value)
    assert "nyu-mll/glue" in message and "unreachable" in message and "glue_dir" in message
    assert "no route to host" in message


def test_real_hub_client_offline_gives_a_data_error():
    # conftest sets HF_DATASETS_OFFLINE: the real client must fail fast and be wrapped.
    with pytest.raises(DataError, match="unreachable"):
        load_task_data(DataSource(task="wnli"))


# --------------------------------------------------------------------------- user files


def user_source(tmp_path: Path, train: str, dev: str, suffix: str = ".tsv", **mapping) -> DataSource:
    (tmp_path / f"train{suffix}").write_text(train)
    (tmp_path / f"dev{suffix}").write_text(dev)
    mapping.setdefault("text_column", "text")
    mapping.setdefault("label_column", "label")
    train_file, dev_file = str(tmp_path / f"train{suffix}"), str(tmp_path / f"dev{suffix}")
    return DataSource(train_file=train_file, dev_file=dev_file, **mapping)


def test_user_binary_classification(tmp_path):
    train = "text\tlabel\ngreat\tpositive\nawful\tnegative\n"
    source = user_source(tmp_path, train, "text\tlabel\nfine\tpositive\n")
    data = load_task_data(source)
    assert (data.name, data.labels, data.metrics) == ("custom", ("negative", "positive"), ("accuracy", "f1"))
    assert data.train == [Example("great", None, 1), Example("awful", None, 0)]
    assert data.dev == {"dev": [Example("fine", None, 1)]}


def test_user_multiclass_pairs_jsonl(tmp_path):
    rows = '{"q": "a", "p": "b", "y": "x"}\n{"q": "c", "p": "d", "y": "z"}\n{"q": "e", "p": "f", "y": "y"}\n'
    source = user_source(
        tmp_path, rows, '{"q": "g", "p": "h", "y": "z"}\n', ".jsonl",
        text_column="q", text_pair_column="p", label_column="y",
    )
    data = load_task_data(source)
    assert data.labels == ("x", "y", "z") and data.metrics == ("accuracy",)
    assert data.dev["dev"] == [Example("g", "h", 2)]


def test_user_regression_csv(tmp_path):
    source = user_source(tmp_path, "text,score\na,1.5\nb,2\n", "text,score\nc,0\n", ".csv",
                         label_column="score", regression=True)
    data = load_task_data(source)
    assert data.is_regression and data.metrics == ("pearson", "spearman")
    assert [e.label for e in data.train] == [1.5, 2.0]


def test_user_dev_label_outside_train_labels(tmp_path):
    source = user_source(tmp_path, "text\tlabel\na\tpos\nb\tneg\n", "text\tlabel\nc\tpos\nd\tmeh\n")
    expected = r"dev\.tsv, line 3: unknown label 'meh'.*training labels are: neg, pos"
    with pytest.raises(DataError, match=expected):
        load_task_data(source)


def test_user_single_class_train(tmp_path):
    source = user_source(tmp_path, "text\tlabel\na\tpos\nb\tpos\n", "text\tlabel\nc\tpos\n")
    with pytest.raises(DataError, match=r"train\.tsv: only one distinct label \('pos'\)"):
        load_task_data(source)


def test_user_source_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="column mapping"):
        load_task_data(DataSource(train_file="t.tsv", dev_file="d.tsv"))
    with pytest.raises(ConfigError, match="both a train file and a dev file"):
        load_task_data(DataSource(task="sst2", train_file="t.tsv", text_column="a", label_column="b"))
    with pytest.raises(ConfigError, match="both a text column and a label column"):
        load_task_data(DataSource(task="sst2", train_file="t.tsv", dev_file="d.tsv", text_column="a"))


def test_data_modules_do_not_import_torch():
    # The HTTP API validates uploads with these modules and must never load torch.
    code = (
        "import sys, xtc_core.tabular, xtc_core.data, xtc_core.metrics; "
        "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_evaluation_needs_no_training_file(glue_dir):
    task = load_task_data(DataSource(task="qnli", glue_dir=str(glue_dir)), need_train=False)
    assert task.train == [] and len(task.dev["dev"]) == 5463
