"""llama.cpp's own ``llama-server``, built from the pinned llama-cpp-python sdist, and a way to run it.

``build_llama_server`` compiles the server from the llama.cpp sources vendored in the sdist that the GGUF
export already uses (``rulebound.export.gguf``), CPU only and portable (AVX2, no ``-march=native``: a native
build segfaults in decode on an AVX-512/AMX Xeon, see README). The binary is cached under
``~/.cache/rulebound`` (or ``$RULEBOUND_CACHE``), keyed by the llama-cpp-python version and the build flags,
so a machine builds it once; a build runs in a temporary folder that is renamed into place only when the
binary works, under a lock, so concurrent builds neither corrupt the cache nor repeat the work.

``llama_server`` starts it on 127.0.0.1 on a free port, waits until ``/health`` says it is ready and stops it
on exit (SIGTERM, then SIGKILL after a timeout), so a GGUF can be checked the way its users run it: through
the OpenAI-compatible ``/v1/chat/completions`` endpoint with the chat template embedded in the GGUF.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rulebound.errors import RuleboundError
from rulebound.export.gguf import SDIST_ROOT, default_cache_dir, normalize_sha256, sdist_tarball

log = logging.getLogger(__name__)

TARGET = "llama-server"
# CPU only, portable x86-64 (the README's llama-cpp-python flags), one static binary, nothing downloaded
# at build time: no web UI assets, no HTTPS (so no OpenSSL), no tests or examples. LLAMA_CURL is gone
# from this llama.cpp (a deprecation warning only); LLAMA_OPENSSL=OFF is what keeps the build offline-safe.
BUILD_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON",
    "-DGGML_CCACHE=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
)
# Big parts of the vendored tree that the server build never reads (vocabulary GGUFs, docs, images).
SKIPPED_DIRS = ("models/", "docs/", "media/", "benches/")
COMPILERS = ("c++", "g++", "clang++")
INSTALL_HINT = "Debian/Ubuntu: apt-get install -y cmake g++; macOS: xcode-select --install && brew install cmake"
LOG_TAIL_LINES = 40


# --------------------------------------------------------------------------- build


def build_key(version: str, flags: Sequence[str] = BUILD_FLAGS) -> str:
    """The cache folder's name: the llama-cpp-python version and a digest of the build flags."""
    digest = hashlib.sha256("\n".join([version, *flags]).encode()).hexdigest()[:12]
    return f"llama-server-{version}-{digest}"


def cached_llama_server(version: str, cache_dir=None, flags: Sequence[str] = BUILD_FLAGS) -> Path:
    """Where the binary for ``version`` and ``flags`` lives in the cache (whether or not it was built)."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    return cache_dir / build_key(version, flags) / TARGET


def build_llama_server(version: str, sha256: str, *, cache_dir=None, jobs: int = 2,
                       flags: Sequence[str] = BUILD_FLAGS) -> Path:
    """The cached ``llama-server`` binary for llama-cpp-python ``version``, built first if it is missing.

    The sdist comes from ``rulebound.export.gguf.sdist_tarball`` (cache, pip, sha256-checked). The build log
    is kept at ``<cache>/<key>.build.log``; a failure names it and quotes its last lines.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    binary = cached_llama_server(version, cache_dir, flags)
    if _works(binary):
        log.info("Reusing cached %s", binary)
        return binary
    cache_dir.mkdir(parents=True, exist_ok=True)
    lock_path = cache_dir / f".{binary.parent.name}.lock"
    with open(lock_path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process is building it: wait, then use its binary
            log.info("Another process is building %s; waiting for it (lock %s)", binary, lock_path)
            fcntl.flock(lock, fcntl.LOCK_EX)
        if _works(binary):
            log.info("Another process built %s", binary)
            return binary
        cmake, compiler = _build_tools()
        tarball = sdist_tarball(version, normalize_sha256(sha256), cache_dir)
        build_log = cache_dir / f"{binary.parent.name}.build.log"
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=f".{binary.parent.name}.tmp-") as tmp:
            tmp = Path(tmp)
            source = extract_llama_cpp_sources(tarball, tmp / "src")
            out = tmp / "out"
            out.mkdir()
            with open(build_log, "w", encoding="utf-8") as log_file:
                _run_logged([cmake, "-S", str(source), "-B", str(tmp / "build"), f"-DCMAKE_CXX_COMPILER={compiler}",
                             *flags], log_file, build_log, "Configuring llama.cpp (cmake)")
                _run_logged([cmake, "--build", str(tmp / "build"), "--config", "Release", "--target", TARGET,
                             f"-j{jobs}"], log_file, build_log, f"Building {TARGET}")
            built = tmp / "build" / "bin" / TARGET
            if not built.is_file():
                raise RuleboundError(f"The build finished but wrote no {built}; see {build_log}.")
            shutil.copy2(built, out / TARGET)
            if not _works(out / TARGET):
                raise RuleboundError(f"The freshly built {TARGET} does not run (`{TARGET} --version` failed); "
                                     f"see {build_log}.")
            seconds = round(time.perf_counter() - start, 1)
            (out / "BUILD.json").write_text(json.dumps(
                {"llama_cpp_python": version, "sdist_sha256": normalize_sha256(sha256), "flags": list(flags),
                 "compiler": compiler, "jobs": jobs, "build_seconds": seconds}, indent=2))
            shutil.copy2(build_log, out / "build.log")
            if binary.parent.exists():  # a stale or broken earlier build
                shutil.rmtree(binary.parent)
            os.replace(out, binary.parent)
        log.info("Built %s in %.0f s", binary, seconds)
    return binary


def _works(binary: Path) -> bool:
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return False
    try:
        proc = subprocess.run([str(binary), "--version"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _build_tools() -> tuple[str, str]:
    cmake = shutil.which("cmake")
    compiler = os.environ.get("CXX") or next((c for c in COMPILERS if shutil.which(c)), None)
    missing = [name for name, found in (("cmake", cmake), ("a C++ compiler (g++ or clang++)", compiler)) if not found]
    if missing:
        raise RuleboundError(f"Building {TARGET} needs {' and '.join(missing)}, not found on PATH. Install them "
                             f"({INSTALL_HINT}) and run again.")
    return cmake, shutil.which(compiler) or compiler


def extract_llama_cpp_sources(tarball: Path, dest: Path) -> Path:
    """The sdist's vendored llama.cpp tree (less models, docs and media) in ``dest``; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    found = False
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            inner = member.name.split("/", 1)[-1]
            if not inner.startswith(SDIST_ROOT) or not member.isfile():
                continue
            rel = inner[len(SDIST_ROOT):]
            if ".." in Path(rel).parts or Path(rel).is_absolute():
                raise RuleboundError(f"{tarball} holds an unsafe path {member.name!r}; refusing to extract it.")
            if rel.startswith(SKIPPED_DIRS):
                continue
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            if member.mode & 0o111:
                target.chmod(0o755)
            found = found or rel == "CMakeLists.txt"
    if not found:
        raise RuleboundError(f"{tarball} has no {SDIST_ROOT}CMakeLists.txt; is it a llama-cpp-python sdist?")
    return dest


def _run_logged(cmd: list[str], log_file, log_path: Path, what: str) -> None:
    log.info("%s: %s (log: %s)", what, " ".join(cmd), log_path)
    log_file.write(f"$ {' '.join(cmd)}\n")
    log_file.flush()
    proc = subprocess.run(cmd, stdout=log_file, stderr=subprocess.STDOUT)
    log_file.flush()
    if proc.returncode != 0:
        raise RuleboundError(f"{what} failed (exit {proc.returncode}); full log: {log_path}\n"
                             f"Last lines:\n{tail(log_path)}")


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(collections.deque(fh, maxlen=lines)).rstrip()
    except OSError as exc:
        return f"(cannot read {path}: {exc})"


# --------------------------------------------------------------------------- run


@dataclass
class RunningServer:
    """A started ``llama-server``: where to reach it, its process and its log."""

    process: subprocess.Popen
    host: str
    port: int
    log_path: Path
    command: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    def health(self, timeout: float = 5.0) -> tuple[int, dict]:
        """``GET /health``: the HTTP status (200 ready, 503 still loading) and the JSON body."""
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body or b"{}")
            except json.JSONDecodeError:
                return exc.code, {"body": body.decode("utf-8", "replace")}


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a new server could listen on ``port`` now: nobody listens there (TIME_WAIT leftovers of
    closed connections do not count; llama-server binds with SO_REUSEADDR too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def llama_server(binary, model, *, lora=None, args: Sequence[str] = (), host: str = "127.0.0.1",
                 port: int | None = None, log_path=None, threads: int | None = None,
                 startup_timeout: float = 180.0, stop_timeout: float = 15.0) -> Iterator[RunningServer]:
    """Run ``llama-server -m model [--lora lora] args`` until the block ends; yield a ``RunningServer``.

    Ready means ``/health`` answered 200. A server that exits or is not ready within ``startup_timeout``
    raises with the last lines of its log. On exit it gets SIGTERM and, after ``stop_timeout``, SIGKILL.
    """
    binary, model = Path(binary), Path(model)
    for what, path in (("llama-server binary", binary), ("GGUF", model), ("LoRA GGUF", lora)):
        if path is not None and not Path(path).is_file():
            raise RuleboundError(f"The {what} {path} does not exist.")
    port = port or free_port(host)
    if log_path is None:
        log_path = Path(tempfile.mkdtemp(prefix="llama-server-")) / "server.log"
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(binary), "-m", str(model), "--host", host, "--port", str(port), "-t", str(threads or os.cpu_count() or 1)]
    if lora is not None:
        cmd += ["--lora", str(lora)]
    cmd += [str(a) for a in args]
    # OpenMP workers spin-wait by default; on shared cores that makes decoding several times slower
    # (rulebound.generate sets the same).
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    log.info("Starting %s (log: %s)", " ".join(cmd), log_path)
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
    server = RunningServer(process=process, host=host, port=port, log_path=log_path, command=cmd)
    try:
        _wait_healthy(server, startup_timeout)
        yield server
    finally:
        stop_server(server, stop_timeout)


def _wait_healthy(server: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    status, body = None, {}
    while time.monotonic() < deadline:
        code = server.process.poll()
        if code is not None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            raise RuleboundError(f"llama-server {how} before it was ready ({' '.join(server.command)}); log "
                                 f"{server.log_path}, last lines:\n{tail(server.log_path)}")
        try:
            status, body = server.health(timeout=2.0)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            status = None  # not listening yet
        if status == 200:
            log.info("llama-server ready at %s", server.url)
            return
        time.sleep(0.25)
    raise RuleboundError(f"llama-server was not healthy within {timeout:.0f} s (last /health: {status} {body}); "
                         f"log {server.log_path}, last lines:\n{tail(server.log_path)}")


def stop_server(server: RunningServer, timeout: float = 15.0) -> int:
    """SIGTERM (llama-server shuts down cleanly on it), SIGKILL after ``timeout``; the exit code."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("llama-server did not stop within %.0f s of SIGTERM; killing it", timeout)
            process.kill()
            process.wait()
    log.info("llama-server on port %d stopped (exit %s)", server.port, process.returncode)
    return process.returncode


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rulebound.serve build``: build (or find) the cached llama-server for config.yaml's pin."""
    import argparse

    import yaml

    parser = argparse.ArgumentParser(prog="python -m rulebound.serve", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build llama-server from the pinned sdist into the cache; print its path")
    build.add_argument("--config", default="config.yaml", help="the config whose llama_cpp pin to build")
    build.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel compile jobs")
    build.add_argument("--cache-dir", default=None, help="default: $RULEBOUND_CACHE or ~/.cache/rulebound")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        pin = yaml.safe_load(Path(args.config).read_text())["llama_cpp"]
        version, sha256 = str(pin["version"]), pin["sha256"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        parser.error(f"cannot read the llama_cpp pin (version, sha256) from {args.config}: {exc}")
    # A SIGTERM (the test suite stopping a background build) unwinds like Ctrl-C, so the temporary
    # build folder is removed and the cache keeps either no binary or a working one.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        binary = build_llama_server(version, sha256, cache_dir=args.cache_dir, jobs=args.jobs)
    except RuleboundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; nothing was cached", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(binary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
