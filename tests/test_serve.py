"""rulebound.serve without compiling anything: cache keys, source extraction, missing tools, and the
server lifecycle (ready, crash, never ready, ignores SIGTERM) against a small stand-in for llama-server.

The real build and the real server are exercised by tests/test_llama_server.py.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import time
from pathlib import Path

import pytest

from rulebound import serve
from rulebound.errors import RuleboundError

# Speaks llama-server's command line and /health; FAKE_MODE picks a misbehaviour.
FAKE_SERVER = '''\
import http.server, json, os, signal, sys, time
args = sys.argv[1:]
port, mode = int(args[args.index("--port") + 1]), os.environ.get("FAKE_MODE", "ok")
print("fake llama-server", " ".join(args), flush=True)
if mode == "crash":
    print("error: failed to load model", flush=True)
    sys.exit(3)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", flush=True))
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
started = time.monotonic()
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ready = mode != "loading" and time.monotonic() - started > 0.5
        body = json.dumps({"status": "ok"} if ready else {"error": {"message": "Loading model"}}).encode()
        self.send_response(200 if ready else 503)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
'''


@pytest.fixture
def fake_binary(tmp_path) -> Path:
    path = tmp_path / "llama-server"
    path.write_text(f"#!{sys.executable}\n{FAKE_SERVER}")
    path.chmod(0o755)
    return path


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    return path


def test_build_key_depends_on_version_and_flags(tmp_path):
    key = serve.build_key("0.3.36")
    assert key.startswith("llama-server-0.3.36-")
    assert serve.build_key("0.3.37") != key
    assert serve.build_key("0.3.36", (*serve.BUILD_FLAGS, "-DGGML_AVX512=ON")) != key
    assert serve.cached_llama_server("0.3.36", tmp_path) == tmp_path / key / "llama-server"
    assert "-DGGML_NATIVE=OFF" in serve.BUILD_FLAGS and "-DGGML_AVX2=ON" in serve.BUILD_FLAGS


def test_cached_binary_is_reused_without_building(tmp_path, fake_binary, monkeypatch):
    cached = serve.cached_llama_server("9.9.9", tmp_path)
    cached.parent.mkdir(parents=True)
    cached.write_text("#!/bin/sh\necho version: fake\n")
    cached.chmod(0o755)
    monkeypatch.setattr(serve, "sdist_tarball", lambda *a, **k: pytest.fail("a cached binary must not refetch"))
    assert serve.build_llama_server("9.9.9", "0" * 64, cache_dir=tmp_path) == cached


def test_build_command_prints_the_cached_binary_and_names_a_bad_config(tmp_path, monkeypatch, capsys):
    """``python -m rulebound.serve build`` (what the test suite starts in the background)."""
    cached = serve.cached_llama_server("9.9.9", tmp_path / "cache")
    cached.parent.mkdir(parents=True)
    cached.write_text("#!/bin/sh\necho version: fake\n")
    cached.chmod(0o755)
    monkeypatch.setattr(serve, "sdist_tarball", lambda *a, **k: pytest.fail("a cached binary must not refetch"))
    config = tmp_path / "config.yaml"
    config.write_text(f"llama_cpp:\n  version: '9.9.9'\n  sha256: {'0' * 64}\n")
    assert serve.main(["build", "--config", str(config), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert capsys.readouterr().out.strip() == str(cached)
    config.write_text("models: {}\n")
    with pytest.raises(SystemExit) as exc:
        serve.main(["build", "--config", str(config)])
    assert exc.value.code == 2 and "cannot read the llama_cpp pin" in capsys.readouterr().err


def test_missing_cmake_is_named_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(RuleboundError, match=r"cmake and a C\+\+ compiler.*apt-get install -y cmake g\+\+"):
        serve.build_llama_server("9.9.9", "0" * 64, cache_dir=tmp_path)
    assert not serve.cached_llama_server("9.9.9", tmp_path).exists()


def _sdist(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def test_extract_sources_keeps_the_tree_and_skips_models(tmp_path):
    tarball = _sdist(tmp_path / "s.tar.gz", {
        "llama_cpp_python-1/vendor/llama.cpp/CMakeLists.txt": b"project(x)",
        "llama_cpp_python-1/vendor/llama.cpp/ggml/src/a.c": b"int a;",
        "llama_cpp_python-1/vendor/llama.cpp/scripts/b.sh": b"#!/bin/sh",
        "llama_cpp_python-1/vendor/llama.cpp/models/ggml-vocab.gguf": b"big",
        "llama_cpp_python-1/llama_cpp/__init__.py": b"",
    })
    out = serve.extract_llama_cpp_sources(tarball, tmp_path / "src")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "CMakeLists.txt", "ggml/src/a.c", "scripts/b.sh"]
    assert os.access(out / "scripts" / "b.sh", os.X_OK)


def test_extract_sources_refuses_a_tarball_without_llama_cpp(tmp_path):
    tarball = _sdist(tmp_path / "s.tar.gz", {"other-1/setup.py": b""})
    with pytest.raises(RuleboundError, match="no vendor/llama.cpp/CMakeLists.txt"):
        serve.extract_llama_cpp_sources(tarball, tmp_path / "src")


def test_extract_sources_refuses_unsafe_paths(tmp_path):
    tarball = _sdist(tmp_path / "s.tar.gz", {"x-1/vendor/llama.cpp/../../evil": b""})
    with pytest.raises(RuleboundError, match="unsafe path"):
        serve.extract_llama_cpp_sources(tarball, tmp_path / "src")


def test_server_waits_for_health_and_stops_cleanly(fake_binary, model, tmp_path):
    with serve.llama_server(fake_binary, model, args=["--jinja"], log_path=tmp_path / "s.log") as server:
        assert server.health() == (200, {"status": "ok"})  # only after the 503 "loading" phase
        assert server.openai_base_url == f"http://127.0.0.1:{server.port}/v1"
        assert not serve.port_is_free(server.port)
    assert server.process.returncode == 0
    assert serve.port_is_free(server.port)
    assert "--jinja" in (tmp_path / "s.log").read_text()


def test_server_that_exits_early_raises_with_its_log(fake_binary, model, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "crash")
    with pytest.raises(RuleboundError, match=r"exited with code 3 before it was ready(.|\n)*failed to load model"):
        with serve.llama_server(fake_binary, model, log_path=tmp_path / "s.log"):
            pytest.fail("a crashed server must not be yielded")


def test_server_never_healthy_times_out_and_is_stopped(fake_binary, model, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "loading")
    start = time.monotonic()
    with pytest.raises(RuleboundError, match=r"not healthy within 2 s \(last /health: 503"):
        with serve.llama_server(fake_binary, model, log_path=tmp_path / "s.log", startup_timeout=2):
            pytest.fail("an unhealthy server must not be yielded")
    assert time.monotonic() - start < 20


def test_server_ignoring_sigterm_is_killed(fake_binary, model, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MODE", "stubborn")
    with serve.llama_server(fake_binary, model, log_path=tmp_path / "s.log", stop_timeout=1) as server:
        pass
    assert server.process.returncode == -9
    assert serve.port_is_free(server.port)


def test_missing_files_are_named(fake_binary, model, tmp_path):
    with pytest.raises(RuleboundError, match="The GGUF .*nope.gguf does not exist"):
        with serve.llama_server(fake_binary, tmp_path / "nope.gguf"):
            pass
    with pytest.raises(RuleboundError, match="The LoRA GGUF .*lora.gguf does not exist"):
        with serve.llama_server(fake_binary, model, lora=tmp_path / "lora.gguf"):
            pass
