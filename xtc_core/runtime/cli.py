"""``xtc predict``: inputs from --text / --file, a folder that is an ONNX export or a checkpoint.

A checkpoint folder is exported to ONNX on the fly (into a temporary folder; that step needs the
``core`` extra, i.e. torch) so predictions always come from the same integer runtime; deploy the
export itself (``xtc export --format onnx``) to run without torch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .predictor import ONNX_MODEL, Predictor


def read_inputs(texts: list[str], file: Path | None) -> list:
    items: list = list(texts)
    if file is not None:
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{file}: cannot read ({exc})") from exc
        for line in lines:
            if line.strip():
                items.append(tuple(line.split("\t", 1)) if "\t" in line else line)
    if not items:
        raise ValueError("give --text or --file")
    if len({isinstance(i, tuple) for i in items}) > 1:
        raise ValueError("mix of single texts and TEXT<tab>PAIR lines; use one kind")
    return items


def run_predict(path: Path, texts: list[str], file: Path | None, threads: int | None) -> list[dict]:
    items = read_inputs(texts, file)
    path = Path(path)
    if (path / ONNX_MODEL).is_file():
        return _rows(Predictor(path, threads=threads), items)
    from ..export_onnx import export_onnx

    with tempfile.TemporaryDirectory(prefix="xtc-onnx-") as tmp:
        export_onnx(path, tmp)
        return _rows(Predictor(tmp, threads=threads), items)


def _rows(predictor: Predictor, items: list) -> list[dict]:
    preds = predictor.predict(items)
    return [{"text": item if isinstance(item, str) else list(item), **p.as_dict()}
            for item, p in zip(items, preds, strict=True)]
