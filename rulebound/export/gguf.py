"""GGUF export: llama.cpp's own converters from the pinned llama-cpp-python sdist, quantization, checks.

Everything that loads llama.cpp's C code on a file we just wrote runs in a subprocess: a GGUF whose
tokenizer was exported wrongly aborts the process (std::out_of_range) on the first tokenize, and
the pipeline should report that, not die with it.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

from rulebound.errors import ConfigError, RuleboundError
from rulebound.io import atomic_path

log = logging.getLogger(__name__)

# llama_ftype values from llama.h (llama_cpp.LLAMA_FTYPE_MOSTLY_*); fixed numbers, so config
# validation can use them without loading llama.cpp.
QUANT_TYPES = {"F16": 1, "Q4_0": 2, "Q8_0": 7, "Q4_K_M": 15, "Q5_K_M": 17, "Q6_K": 18}

SDIST_ROOT = "vendor/llama.cpp/"
# What the converters need from the sdist: the scripts, their `conversion` package, the sdist's own
# gguf-py, and the data files some model classes read (chat templates, built-in vocabularies).
SDIST_FILES = {"convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "LICENSE", "gguf-py/LICENSE",
               "models/ggml-vocab-gpt-neox.gguf", "models/ggml-vocab-llama-spm.gguf"}
SDIST_DIRS = ("conversion/", "gguf-py/gguf/", "models/templates/")
RUN_HINTS = {
    "requantizing from type": "Quantize from the F16 GGUF; requantizing an already quantized file loses quality.",
    "No module named 'sentencepiece'": "pip install sentencepiece (the converter imports it for Llama models).",
    "No module named 'mistral_common'": "pip install mistral-common (needed for Mistral-format checkpoints).",
}
PIP_CACHE_MIN_BYTES = 10_000_000  # pip's cache holds many small files; the sdist is 76 MB
ROUND_TRIP_TEXT = "Hello, world! Please answer in 3 words: café, naïve, 日本."


# --------------------------------------------------------------------------- fetch the converter


def default_cache_dir() -> Path:
    return Path(os.environ.get("RULEBOUND_CACHE") or Path.home() / ".cache" / "rulebound")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sdist_name(version: str) -> str:
    return f"llama_cpp_python-{version}.tar.gz"


def fetch_llama_cpp(version: str, sha256: str, dest_dir, cache_dir=None) -> Path:
    """The pinned llama-cpp-python sdist's converters, extracted into ``dest_dir``.

    The sdist comes from the cache (``~/.cache/rulebound`` or ``$RULEBOUND_CACHE``), else from pip
    (``pip download llama-cpp-python==<version> --no-binary :all: --no-deps``, which honours the user's
    index, proxy and mirror settings), else from pip's own cache on an offline machine. Whatever the
    source, its sha256 must be the pinned one; a mismatching file is never used.
    """
    sha256 = normalize_sha256(sha256)
    tarball = sdist_tarball(version, sha256, cache_dir)
    version = _extract_converters(tarball, Path(dest_dir), version=version, sha256=sha256)
    _warn_on_version_skew(version)
    return Path(dest_dir)


def normalize_sha256(sha256: str) -> str:
    return sha256.lower().removeprefix("sha256:").strip()


def sdist_tarball(version: str, sha256: str, cache_dir=None) -> Path:
    """The pinned sdist in the cache, fetched first if it is missing or does not match ``sha256``."""
    sha256 = normalize_sha256(sha256)
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    tarball = cache_dir / sdist_name(version)
    if tarball.is_file():
        if sha256_file(tarball) == sha256:
            log.info("Reusing cached %s", tarball)
        else:
            log.warning("Cached %s does not match sha256 %s; fetching it again", tarball, sha256)
            tarball.unlink()
    if not tarball.is_file():
        _fetch_sdist(version, sha256, tarball)
    return tarball


def _fetch_sdist(version: str, sha256: str, tarball: Path) -> None:
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tarball.parent, prefix=".pip-download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", f"llama-cpp-python=={version}", "--no-binary", ":all:",
               "--no-deps", "--disable-pip-version-check", "-d", tmp]
        log.info("Fetching the llama-cpp-python %s sdist with pip: %s", version, " ".join(cmd))
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / sdist_name(version)
        if proc.returncode == 0 and got.is_file():
            _keep_if_pinned(got, sha256, tarball, "pip download")
            return
        found = _from_pip_cache(sha256)
        if found is not None:
            log.info("pip could not download it (offline?); using the copy in pip's cache, %s", found)
            _keep_if_pinned(found, sha256, tarball, f"pip's cache ({found})", copy=True)
            return
    raise RuleboundError(
        f"Could not fetch the llama-cpp-python {version} sdist: pip download failed "
        f"({(proc.stderr or proc.stdout).strip().splitlines()[-1:] or ['no output']}) and pip's cache has no "
        f"copy. Offline? On a machine with network access run `pip download llama-cpp-python=={version} "
        f"--no-binary :all: --no-deps`, put the file at {tarball} (or in $RULEBOUND_CACHE), then rerun; it is "
        "checked against the sha256 in config.yaml."
    )


def _keep_if_pinned(path: Path, sha256: str, tarball: Path, source: str, copy: bool = False) -> None:
    digest = sha256_file(path)
    if digest != sha256:
        raise RuleboundError(
            f"sha256 mismatch for the llama-cpp-python sdist from {source}: expected {sha256}, got {digest}; it "
            "was not used. If llama_cpp.version was changed on purpose, update llama_cpp.sha256 to the value "
            "the package index lists for that sdist."
        )
    with atomic_path(tarball) as tmp:
        (shutil.copyfile if copy else shutil.move)(path, tmp)


def _from_pip_cache(sha256: str) -> Path | None:
    """A file in pip's cache whose content is the pinned sdist (pip keeps downloaded files by URL hash)."""
    proc = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True)
    root = Path(proc.stdout.strip()) if proc.returncode == 0 and proc.stdout.strip() else None
    if root is None or not root.is_dir():
        return None
    for path in root.rglob("*"):
        try:
            if path.is_file() and path.stat().st_size >= PIP_CACHE_MIN_BYTES and path.open("rb").read(2) == b"\x1f\x8b":
                if sha256_file(path) == sha256:
                    return path
        except OSError:
            continue
    return None


def _wanted(rel: str) -> bool:
    return rel in SDIST_FILES or (rel.startswith(SDIST_DIRS) and "/__pycache__/" not in rel)


def _extract_converters(tarball: Path, dest_dir: Path, *, version: str, sha256: str) -> str:
    """Extract only what the converters need, in one pass over the tarball; return the sdist version."""
    top = None
    with atomic_path(dest_dir, is_dir=True) as tmp, tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            top = top or member.name.split("/", 1)[0]
            inner = member.name.split("/", 1)[-1]
            rel = inner[len(SDIST_ROOT):]
            if not member.isfile() or not inner.startswith(SDIST_ROOT) or not _wanted(rel):
                continue
            if ".." in Path(rel).parts or Path(rel).is_absolute():
                raise RuleboundError(f"{tarball} holds an unsafe path {member.name!r}; refusing to extract it.")
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
        missing = [f for f in ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "gguf-py/gguf/__init__.py",
                               "conversion/__init__.py") if not (tmp / f).is_file()]
        if missing:
            raise RuleboundError(f"{tarball} lacks {', '.join(missing)}; is it a llama-cpp-python sdist?")
        version = (top or "").partition("-")[2] or version
        (tmp / "SOURCE.json").write_text(json.dumps({"sdist": tarball.name, "sha256": sha256, "version": version},
                                                    indent=2))
    log.info("Extracted llama.cpp %s converters into %s", version, dest_dir)
    return version


def _warn_on_version_skew(version: str) -> None:
    try:
        installed = metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        log.warning("llama-cpp-python is not installed; pip install llama-cpp-python==%s", version)
        return
    if installed != version:
        log.warning("Converters come from llama-cpp-python %s but %s is installed: GGUFs written by a newer "
                    "converter may not load in the older runtime. Pin both to the same version.", version, installed)


# --------------------------------------------------------------------------- convert


def _converter(llama_cpp_dir, script: str) -> tuple[Path, dict]:
    root = Path(llama_cpp_dir)
    path = root / script
    if not path.is_file():
        raise RuleboundError(f"{path} not found; run the fetch_llama_cpp rule (rulebound.export.gguf.fetch_llama_cpp).")
    env = dict(os.environ, TQDM_DISABLE="1", PYTHONIOENCODING="utf-8")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root / "gguf-py"), os.environ.get("PYTHONPATH")) if p)
    return path, env


def _run(cmd: list[str], what: str, env: dict | None = None) -> str:
    """Run ``cmd``, streaming its output into the log; on failure raise with the output's tail."""
    log.info("Running %s", " ".join(cmd))
    tail: collections.deque[str] = collections.deque(maxlen=30)
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          encoding="utf-8", errors="replace") as proc:
        for line in proc.stdout:
            log.info("  %s", line.rstrip())
            tail.append(line.rstrip())
    if proc.returncode != 0:
        output = "\n".join(tail)
        hints = [hint for needle, hint in RUN_HINTS.items() if needle in output]
        crash = f" (killed by signal {-proc.returncode})" if proc.returncode < 0 else ""
        advice = "".join(f" {hint}" for hint in hints)
        raise RuleboundError(f"{what} failed{crash}.{advice}\nLast output:\n{output}")
    return "\n".join(tail)


def _refuse_quantized_model(model_dir: Path) -> None:
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise RuleboundError(f"{model_dir} is not a Hugging Face model folder (no config.json).")
    if json.loads(config_file.read_text(encoding="utf-8")).get("quantization_config"):
        raise RuleboundError(f"{model_dir} holds quantized weights; convert the 16-bit merge (rulebound.export.merge).")


def convert_hf_to_gguf(model_dir, out_file, llama_cpp_dir, outtype: str = "f16") -> Path:
    """Convert an HF folder to one GGUF file with llama.cpp's convert_hf_to_gguf.py."""
    model_dir = Path(model_dir)
    _refuse_quantized_model(model_dir)
    script, env = _converter(llama_cpp_dir, "convert_hf_to_gguf.py")
    with atomic_path(out_file) as tmp:
        _run([sys.executable, str(script), str(model_dir), "--outfile", str(tmp), "--outtype", outtype],
             f"Converting {model_dir} to GGUF", env)
    return Path(out_file)


def convert_lora_to_gguf(adapter_dir, base_dir, out_file, llama_cpp_dir, outtype: str = "f16") -> Path:
    """Convert a PEFT LoRA adapter to a GGUF LoRA (for llama.cpp's --lora) with convert_lora_to_gguf.py."""
    from rulebound.export.merge import check_adapter_dir

    check_adapter_dir(Path(adapter_dir))
    script, env = _converter(llama_cpp_dir, "convert_lora_to_gguf.py")
    with atomic_path(out_file) as tmp:
        _run([sys.executable, str(script), "--outfile", str(tmp), "--outtype", outtype, "--base", str(base_dir),
              str(adapter_dir)], f"Converting adapter {adapter_dir} to GGUF", env)
    return Path(out_file)


# --------------------------------------------------------------------------- quantize

_QUANTIZE_CODE = """
import sys, llama_cpp
params = llama_cpp.llama_model_quantize_default_params()
params.ftype, params.nthread = int(sys.argv[3]), int(sys.argv[4])
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), params))
"""


def quantize_gguf(in_path, out_path, quant: str, threads: int | None = None) -> Path:
    """Quantize a 16/32-bit GGUF to ``quant`` (a QUANT_TYPES name) with llama.cpp, in a subprocess."""
    if quant not in QUANT_TYPES:
        raise ConfigError(f"Unknown GGUF quantization {quant!r}; allowed: {', '.join(QUANT_TYPES)}.")
    in_path, out_path = Path(in_path), Path(out_path)
    if in_path.resolve() == out_path.resolve():
        raise ConfigError(f"quantize_gguf would overwrite its input {in_path}; write the quantized file elsewhere.")
    if not in_path.is_file():
        raise RuleboundError(f"GGUF to quantize not found: {in_path}")
    threads = threads or os.cpu_count() or 1
    with atomic_path(out_path) as tmp:
        _run([sys.executable, "-c", _QUANTIZE_CODE, str(in_path), str(tmp), str(QUANT_TYPES[quant]), str(threads)],
             f"Quantizing {in_path} to {quant}")
    return out_path


# --------------------------------------------------------------------------- check


def read_metadata(path) -> dict:
    """Architecture, file type, chat template and special tokens of a GGUF, read with gguf-py."""
    from gguf import GGUFReader, LlamaFileType, TokenType

    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # truncated or foreign files raise all sorts of errors
        raise RuleboundError(f"{path} is not a readable GGUF file ({type(exc).__name__}: {exc}).") from exc

    def scalar(key):
        field = reader.fields.get(key)
        return None if field is None else field.contents()

    file_type = scalar("general.file_type")
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    types = scalar("tokenizer.ggml.token_type") or []

    def token(i):
        if tokens is None or i is None or i >= len(tokens.data):
            return None
        return bytes(tokens.parts[tokens.data[i]]).decode("utf-8", errors="replace")

    # Control and user-defined tokens: the only ones a chat template can end a turn with.
    special = {token(i): i for i, t in enumerate(types) if t in (TokenType.CONTROL, TokenType.USER_DEFINED)}
    try:
        file_type_name = LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    except ValueError:
        file_type_name = f"unknown ({file_type})"
    return {
        "architecture": scalar("general.architecture"),
        "file_type": file_type_name,
        "chat_template": scalar("tokenizer.chat_template"),
        "eos_token_id": scalar("tokenizer.ggml.eos_token_id"),
        "eos_token": token(scalar("tokenizer.ggml.eos_token_id")),
        "eot_token_id": scalar("tokenizer.ggml.eot_token_id"),
        "bos_token": token(scalar("tokenizer.ggml.bos_token_id")),
        "special_tokens": special,
    }


def end_of_turn_token(template: str, special_tokens: dict[str, int], bos: str = "", eos: str = "") -> str:
    """Which special token ends an assistant turn: render a dummy chat and read what follows the answer."""
    from datetime import datetime

    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda value, indent=None, **_: json.dumps(value, ensure_ascii=False, indent=indent)
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt))
    answer = "ASSISTANT_ANSWER_8c1f"
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": answer},
                {"role": "user", "content": "Thanks"}]
    try:
        text = env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                                bos_token=bos or "", eos_token=eos or "")
    except Exception as exc:
        raise RuleboundError(f"The GGUF's chat template cannot be rendered ({type(exc).__name__}: {exc}).") from exc
    if answer not in text:
        raise RuleboundError("The GGUF's chat template drops assistant messages; cannot tell how a turn ends.")
    after = text.split(answer, 1)[1].lstrip()
    matches = [tok for tok in special_tokens if tok and after.startswith(tok)]
    if not matches:
        raise RuleboundError(
            f"The chat template ends an assistant turn with {after[:40]!r}, which is not a special token of "
            "the GGUF's vocabulary, so generation cannot stop there."
        )
    return max(matches, key=len)


_VOCAB_CHECK_CODE = """
import json, sys, llama_cpp
path, text, eot = sys.argv[1:4]
llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
ids = llm.tokenize(text.encode(), add_bos=False, special=False)
eot_ids = llm.tokenize(eot.encode(), add_bos=False, special=True)
vocab = llama_cpp.llama_model_get_vocab(llm.model)
print(json.dumps({"text": llm.detokenize(ids).decode("utf-8", "replace"), "eot_ids": eot_ids,
                  "eog": [bool(llama_cpp.llama_vocab_is_eog(vocab, i)) for i in eot_ids]}))
"""


def _check_tokenizer(path: Path, eot: str) -> dict:
    """Load the vocabulary in llama.cpp (subprocess: a broken tokenizer aborts) and round-trip text."""
    proc = subprocess.run([sys.executable, "-c", _VOCAB_CHECK_CODE, str(path), ROUND_TRIP_TEXT, eot],
                          capture_output=True, text=True, encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        crash = f"crashed (signal {-proc.returncode})" if proc.returncode < 0 else f"failed (exit {proc.returncode})"
        raise RuleboundError(
            f"llama.cpp {crash} loading or using the tokenizer of {path}: the vocabulary may have been exported "
            "wrongly (for byte-level BPE models, check tokenizer.json has no byte_fallback). "
            f"Output:\n{proc.stderr[-2000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_gguf(path) -> dict:
    """Check that a GGUF carries its chat template, stops at the end of a turn and tokenizes in llama.cpp."""
    path = Path(path)
    if not path.is_file():
        raise RuleboundError(f"GGUF file not found: {path}")
    meta = read_metadata(path)
    if not meta["chat_template"]:
        raise RuleboundError(
            f"{path} has no chat template (tokenizer.chat_template): llama.cpp and Ollama would format chats "
            "differently from training. Make sure the merged folder has chat_template.jinja and convert again."
        )
    if meta["eos_token_id"] is None:
        raise RuleboundError(f"{path} names no eos token (tokenizer.ggml.eos_token_id); generation would not stop.")
    eot = end_of_turn_token(meta["chat_template"], meta["special_tokens"], meta["bos_token"], meta["eos_token"])
    eot_id = meta["special_tokens"][eot]
    if eot_id not in (meta["eos_token_id"], meta["eot_token_id"]):
        raise RuleboundError(
            f"{path}: eos is {meta['eos_token']!r} (id {meta['eos_token_id']}) but the chat template ends assistant "
            f"turns with {eot!r} (id {eot_id}), so llama.cpp and Ollama would not stop generating. Set eos_token to "
            f"{eot!r} in the model's tokenizer_config.json and generation_config.json, then convert again."
        )
    result = _check_tokenizer(path, eot)
    if result["text"].strip() != ROUND_TRIP_TEXT:
        raise RuleboundError(f"{path}: llama.cpp's tokenizer does not round-trip text: "
                             f"{ROUND_TRIP_TEXT!r} came back as {result['text']!r}.")
    if result["eot_ids"] != [eot_id] or not all(result["eog"]):
        raise RuleboundError(f"{path}: llama.cpp reads {eot!r} as tokens {result['eot_ids']} "
                             f"(end of generation: {result['eog']}), expected the single stop token {eot_id}.")
    info = {
        "path": str(path), "architecture": meta["architecture"], "file_type": meta["file_type"],
        "chat_template": meta["chat_template"], "eos_token": meta["eos_token"], "eos_token_id": meta["eos_token_id"],
        "end_of_turn_token": eot, "size_bytes": path.stat().st_size,
    }
    log.info("GGUF check passed: %s (%s, %s, eos %r, %.1f MiB)", path, info["architecture"], info["file_type"],
             info["eos_token"], info["size_bytes"] / 2**20)
    return info


def check_gguf_or_remove(path, quant: str | None = None) -> dict:
    """check_gguf (and, with ``quant``, the file type); a file that fails is deleted, not left for Ollama."""
    try:
        info = check_gguf(path)
        if quant and info["file_type"] != quant:
            raise RuleboundError(f"{path} has file type {info['file_type']}, expected {quant}.")
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise
    return info
