"""One entry for ``xtc export``: format dispatch and a summary of what was written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import ConfigError

FORMATS = ("onnx", "hf", "packed8")


def export_checkpoint(ckpt: str | Path, fmt: str, out: str | Path, *, max_length: int | None = None
                      ) -> dict[str, Any]:
    if fmt not in FORMATS:
        raise ConfigError(f"--format takes one of {', '.join(FORMATS)}, got {fmt!r}")
    from .checkpoint import read_meta

    read_meta(ckpt)  # a clear error for a folder that is not a checkpoint
    out = Path(out)
    if fmt == "onnx":
        from .export_onnx import describe, export_onnx

        export_onnx(ckpt, out, max_length=max_length)
        info = describe(out)
    elif fmt == "packed8":
        from .inspect import inspect_checkpoint
        from .storage8 import repack_floats_8bit

        repack_floats_8bit(ckpt, out)
        report = inspect_checkpoint(out)
        info = {"path": str(out), "ratio": report["ratio"], "bytes_by_kind": report["bytes_by_kind"]}
    else:
        from .export_hf import export_hf

        export_hf(ckpt, out)
        info = {"path": str(out)}
    info["format"] = fmt
    info["bytes"] = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    return info
