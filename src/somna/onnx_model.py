"""The embedding model on onnxruntime: the same vectors as sentence-transformers, without torch.

A sentence-transformers model of the common shape (a BERT encoder, mean pooling, optional
normalisation: all-MiniLM-L6-v2 is one) is exported to ONNX once, from the weights on disk, and
kept in somna's cache. Every later start loads that file with onnxruntime and the model's own
`tokenizer.json`: no torch import (seconds, and most of a server's memory), and a query embeds in
about a third of the time. The export is checked against the torch model before it is kept; any
model of another shape, or any failure, leaves somna on sentence-transformers as before.

Environment: SOMNA_CACHE  where exported models are kept (default $XDG_CACHE_HOME/somna or ~/.cache/somna)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger("somna.embeddings")

EXPORT_VERSION = 1  # bump when the exported graph changes: old files are then ignored
# Tokens squared per batch: attention holds batch x heads x tokens^2 floats per layer, so long texts go
# in small batches (4 at 256 tokens) and a bulk import of long notes stays within tens of MB.
ATTENTION_BUDGET = 256 * 256 * 4
PARITY = 0.9999  # an export is kept only if every check vector matches torch's to this cosine
CHECK_TEXTS = [
    "The deploy script needs --force when the lockfile changed.",
    "Use uv, not pip, in this repository; run tests with `make check`.",
    "Ida Gray works as a graphic designer in Lisbon.",
    "port 5433",
    "A longer note: the nightly job rotates the staging database credentials at 02:00 UTC and posts "
    "the new secret's version to #ops; if the rotation fails, the old credentials stay valid for 24 hours.",
]


def cache_dir() -> Path:
    env = os.environ
    if env.get("SOMNA_CACHE"):
        return Path(env["SOMNA_CACHE"]).expanduser()
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "somna"


def _weights(model_dir: Path) -> Path | None:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).is_file():
            return model_dir / name
    return None


def supported(model_dir: Path) -> bool:
    """A BERT encoder, mean pooling and at most a normalisation after it, with a tokenizer.json."""
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
        config = json.loads((model_dir / "config.json").read_text())
        types = [m["type"].rsplit(".", 1)[-1] for m in modules]
        if types not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
            return False
        pooling = json.loads((model_dir / modules[1]["path"] / "config.json").read_text())
        modes = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v]
        return (
            config.get("model_type") == "bert"
            and modes == ["pooling_mode_mean_tokens"]
            and (model_dir / "tokenizer.json").is_file()
            and _weights(model_dir) is not None
        )
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False


def onnx_path(model_dir: Path) -> Path:
    """Where the export of this model (these weights, this export version) lives in the cache."""
    weights = _weights(model_dir)
    st = weights.stat() if weights else None
    key = f"{model_dir.resolve()}|{st.st_size if st else 0}|{st.st_mtime_ns if st else 0}|{EXPORT_VERSION}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "onnx" / f"{model_dir.name[:40]}-{digest}" / "model.onnx"


UNUSED_DAYS = 30  # an export no somna has loaded for this long is removed when another one is made


def touch(path: Path) -> None:
    """Mark an export as in use (its mtime), so that `prune` keeps it."""
    try:
        os.utime(path)
    except OSError:
        pass  # a read-only cache: nothing is pruned from it either


def prune(keep: Path) -> list[Path]:
    """Remove the exports other than `keep` that no somna loaded for UNUSED_DAYS (each is ~90 MB; a model
    package reinstalled or upgraded leaves its old export behind). Returns the folders removed."""
    removed = []
    cutoff = time.time() - UNUSED_DAYS * 86400
    for folder in (cache_dir() / "onnx").glob("*"):
        try:
            if folder == keep.parent or not folder.is_dir():
                continue
            # in use: its export loaded lately, or another process writing one there now
            if max([folder.stat().st_mtime, *(f.stat().st_mtime for f in folder.iterdir())]) > cutoff:
                continue
            shutil.rmtree(folder)
            removed.append(folder)
        except OSError as exc:
            log.warning("could not remove the old model export %s: %s", folder, exc)
    return removed


def max_length(model_dir: Path) -> int:
    try:
        return int(json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return 256


def model_dir_encoder(path: Path, model_dir: Path, threads: int) -> OnnxEncoder:
    """An ONNX file of a sentence-transformers model folder, with that folder's own tokenizer.json."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.enable_truncation(max_length(model_dir))
    tokenizer.no_padding()
    dim = int(json.loads((model_dir / "config.json").read_text())["hidden_size"])
    return OnnxEncoder(path, tokenizer, dim, threads)


class OnnxEncoder:
    """`encode(texts)` -> unit vectors, as `SentenceTransformer.encode(..., normalize_embeddings=True)`."""

    def __init__(self, path: Path, tokenizer: Any, dim: int, threads: int) -> None:
        """`tokenizer`: anything with `encode_batch(texts)` giving `.ids`, `.attention_mask`, `.type_ids`
        (a `tokenizers.Tokenizer`, or somna's own WordPiece for the packaged model)."""
        import numpy as np
        import onnxruntime as ort

        self._np = np
        self.path = path
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        # Spinning threads steal the core a busy machine needs: a query then waits on them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = tokenizer
        self._inputs = {i.name for i in self.session.get_inputs()}
        self.dim = dim

    def encode(self, texts: list[str], batch_size: int = 32, **_: Any) -> Any:
        np = self._np
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # like lengths batch together
        encs = self.tokenizer.encode_batch(texts)
        start = 0
        while start < len(order):
            width = len(encs[order[min(start + batch_size, len(order)) - 1]].ids)
            take = max(1, min(batch_size, ATTENTION_BUDGET // max(1, width * width)))
            idx = order[start : start + take]
            start += take
            batch = [encs[i] for i in idx]
            width = max(len(e.ids) for e in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            types = np.zeros_like(ids)
            for row, e in enumerate(batch):
                n = len(e.ids)
                ids[row, :n] = e.ids
                mask[row, :n] = e.attention_mask
                types[row, :n] = e.type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[idx] = pooled / np.where(norms == 0, 1, norms)
        return out


def export(st_model: Any, model_dir: Path, threads: int) -> OnnxEncoder:
    """Export a loaded SentenceTransformer to the cache, check it against torch, and load it."""
    import numpy as np
    import torch

    dest = onnx_path(model_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    bert = st_model[0].auto_model.eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    sample = st_model.tokenizer(CHECK_TEXTS[:2], padding=True, return_tensors="pt")
    axes = {0: "batch", 1: "tokens"}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Encoder(),
                (sample["input_ids"], sample["attention_mask"], sample["token_type_ids"]),
                str(tmp),
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["hidden"],
                dynamic_axes={
                    "input_ids": axes,
                    "attention_mask": axes,
                    "token_type_ids": axes,
                    "hidden": axes,
                },
                opset_version=17,
                dynamo=False,
            )
        encoder = model_dir_encoder(tmp, model_dir, threads)
        want = st_model.encode(CHECK_TEXTS, normalize_embeddings=True, convert_to_numpy=True)
        got = encoder.encode(CHECK_TEXTS)
        worst = float(np.min((want * got).sum(axis=1)))
        if worst < PARITY:
            raise ValueError(f"the export differs from torch (cosine {worst:.6f})")
        os.replace(tmp, dest)  # the session has read the file already: the encoder stays as it is
        encoder.path = dest
        log.info("embedding model exported to %s (cosine to torch >= %.6f)", dest, worst)
        for folder in prune(dest):
            log.info("removed an export unused for %d days: %s", UNUSED_DAYS, folder)
        return encoder
    finally:
        tmp.unlink(missing_ok=True)
