"""W&B unreachable: a bounded wait, then the run trains offline; ``eqmarl sync`` is bounded too.
A server that goes away after a good start: the end of the run waits a bounded time, and
``eqmarl sync`` uploads the run once the server is back.

The server is real: a local socket that accepts connections and never answers (a black
hole), a port where nothing listens, or :class:`FakeWandb`, an HTTP server on 127.0.0.1
that answers what wandb asks.  wandb is the installed package, with an API key set, so
``logger.wandb_mode=auto`` (the default) goes online first.
"""

import csv
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from eqmarl.train.checkpoint import load_checkpoint, resolve_checkpoint
from eqmarl.train.logger import read_wandb_history
from tests.conftest import TINY, launch_cmd, run_ok

API_KEY = "0123456789abcdef0123456789abcdef01234567"
# TINY disables W&B; these runs use the default mode (auto) with a short wait
WANDB_RUN = [o for o in TINY if not o.startswith("logger.wandb_mode")] + ["logger.wandb_init_timeout_s=3"]


class BlackHole:
    """A TCP server on 127.0.0.1 that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


class FakeWandb:
    """A W&B server on 127.0.0.1: answers the GraphQL calls, file streams and file uploads
    that wandb's start, logging, finish and ``wandb sync`` make, and keeps the history rows it
    receives.  With ``vanish_after_start`` it answers the run's start (its first
    ``UpsertBucket``) and then nothing more: later requests are accepted and never answered.
    """

    def __init__(self, vanish_after_start: bool = False) -> None:
        self.history: list[dict] = []  # rows of the streamed wandb-history.jsonl
        self.calls: list[str] = []  # GraphQL operation names, file_stream, upload
        self.vanish_after_start = vanish_after_start
        self.vanished = threading.Event()
        self.closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if server.vanished.is_set():
                    server.closing.wait()  # accepted, never answered
                    return
                if self.path.startswith("/graphql"):
                    self.reply({"data": server.graphql(json.loads(body))})
                else:
                    if "/file_stream" in self.path:
                        server.stream(json.loads(body))
                    self.reply({"exitcode": None, "limits": {}})

            def do_PUT(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.calls.append("upload")
                if server.vanished.is_set():
                    server.closing.wait()
                    return
                self.reply({})

            def reply(self, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def graphql(self, request: dict) -> dict:
        name = re.search(r"(?:query|mutation)\s+(\w+)", request.get("query", "")).group(1)
        v = request.get("variables") or {}
        self.calls.append(name)
        if name == "UpsertBucket":
            if self.vanish_after_start:
                self.vanished.set()  # this answer is the last
            project = {"id": "p1", "name": v.get("project") or "eqmarl", "entity": {"id": "e1", "name": "tester"}}
            bucket = {"id": "r1", "name": v.get("name"), "displayName": v.get("displayName") or "run"}
            return {
                "upsertBucket": {"bucket": {**bucket, "sweepName": None, "historyLineCount": 0, "project": project}}
            }
        if name == "Viewer":
            return {"viewer": {"id": "u1", "entity": "tester", "username": "tester", "flags": "{}", "teams": {}}}
        if name == "ServerFeaturesQuery":
            return {"serverInfo": {"features": []}}
        if name == "CreateRunFiles":
            url = f"http://127.0.0.1:{self.port}/upload"
            files = [{"name": f, "uploadUrl": f"{url}/{f}"} for f in v.get("files", [])]
            return {"createRunFiles": {"runID": "r1", "uploadHeaders": [], "files": files}}
        return {"model": None}  # RunResumeStatus: no such run yet

    def stream(self, body: dict) -> None:
        self.calls.append("file_stream")
        lines = body.get("files", {}).get("wandb-history.jsonl", {}).get("content", [])
        self.history += [json.loads(line) for line in lines]

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connections are refused
    return port


@pytest.fixture
def black_hole():
    server = BlackHole()
    yield server
    server.close()


def wandb_env(clean_env, port):
    env = dict(clean_env)
    env.pop("WANDB_MODE", None)
    env["WANDB_API_KEY"] = API_KEY
    env["WANDB_BASE_URL"] = f"http://127.0.0.1:{port}"
    return env


def offline_runs(run_dir):
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def check_trained_offline(run_dir, p, iterations):
    assert "warning: W&B did not start online within logger.wandb_init_timeout_s=3 s" in p.stderr
    assert f"upload later with: eqmarl sync {run_dir}" in p.stderr
    assert "Traceback" not in p.stderr
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [int(r["iteration"]) for r in rows] == list(range(1, iterations + 1))
    (run,) = offline_runs(run_dir)[-1:]
    history = [h for h in read_wandb_history(run) if "iteration" in h]
    assert [h["iteration"] for h in history] == [int(r["iteration"]) for r in rows][-len(history) :]
    return run


@pytest.mark.slow
def test_black_hole_server_falls_back_offline_and_resume_keeps_the_run_id(tmp_path, clean_env, black_hole):
    env = wandb_env(clean_env, black_hole.port)
    run_dir = tmp_path / "run"
    t0 = time.monotonic()
    p = run_ok(launch_cmd(*WANDB_RUN, f"hydra.run.dir={run_dir}", "train.max_iterations=2"), env=env)
    assert time.monotonic() - t0 < 90  # 3 s of waiting, not wandb's 90 s
    assert black_hole.conns, "wandb never contacted the server"
    first = check_trained_offline(run_dir, p, 2)
    run_id = first.name.rsplit("-", 1)[1]
    assert f"continuing offline as run {run_id}" in p.stderr
    assert load_checkpoint(resolve_checkpoint(run_dir))["wandb_run_id"] == run_id
    # resumed while the server is still unreachable: offline again, under the same W&B run id
    resume = launch_cmd(*WANDB_RUN, f"resume={run_dir}", "train.max_iterations=null", f"hydra.run.dir={tmp_path / 'x'}")
    p = run_ok(resume, env=env)
    second = check_trained_offline(run_dir, p, 4)
    assert second != first and second.name.endswith(f"-{run_id}")
    assert [h["iteration"] for h in read_wandb_history(second) if "iteration" in h] == [3, 4]


@pytest.mark.slow
def test_refused_connection_falls_back_offline(tmp_path, clean_env):
    env = wandb_env(clean_env, closed_port())
    run_dir = tmp_path / "run"
    p = run_ok(launch_cmd(*WANDB_RUN, f"hydra.run.dir={run_dir}"), env=env)
    check_trained_offline(run_dir, p, 4)
    assert (run_dir / "checkpoints" / "latest").read_text() == "ckpt_000004.pt"


def test_wandb_init_timeout_must_be_a_positive_finite_number(tmp_path, clean_env):
    for bad in ("0", "-1", "inf", "nan"):
        p = subprocess.run(
            launch_cmd(*TINY, f"logger.wandb_init_timeout_s={bad}", f"hydra.run.dir={tmp_path / bad}"),
            capture_output=True,
            text=True,
            env=clean_env,
            timeout=120,
            check=False,
        )
        assert p.returncode == 2, p.stderr[-2000:]
        assert "logger.wandb_init_timeout_s" in p.stderr and "allowed: a finite number" in p.stderr  # (of seconds > 0)
        assert not (tmp_path / bad / "metrics.csv").exists()


@pytest.mark.slow
def test_sync_uses_the_installed_wandb_and_gives_up_after_timeout(tmp_path, clean_env, black_hole):
    # an offline run to upload
    run_dir = tmp_path / "run"
    run_ok(launch_cmd(*TINY, "logger.wandb_mode=offline", f"hydra.run.dir={run_dir}"), env=clean_env)
    (offline,) = offline_runs(run_dir)
    # a different `wandb` first on PATH must not be the one that runs
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    marker = tmp_path / "fake_wandb_ran"
    (fake_bin / "wandb").write_text(f"#!/bin/sh\ntouch {marker}\nexit 0\n")
    (fake_bin / "wandb").chmod(0o755)
    env = wandb_env(clean_env, black_hole.port)
    env["PATH"] = f"{fake_bin}{os.pathsep}{env['PATH']}"
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "eqmarl.cli", "sync", str(run_dir), "--timeout", "4"],
        cwd=tmp_path,  # wandb sync writes a wandb/ folder in its working directory
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert p.returncode == 124, p.stdout[-2000:] + p.stderr[-2000:]
    assert time.monotonic() - t0 < 60
    assert "eqmarl sync: not finished after --timeout=4 s" in p.stderr
    assert f"run `eqmarl sync {run_dir}` again later" in p.stderr
    assert not marker.exists(), "ran the wandb found on PATH"
    assert black_hole.conns, "the installed wandb never contacted the server"
    assert offline.exists() and list(offline.glob("run-*.wandb"))  # nothing lost


@pytest.fixture
def vanishing_server():
    server = FakeWandb(vanish_after_start=True)
    yield server
    server.close()


@pytest.mark.slow
def test_server_gone_after_a_good_start_bounds_finish_and_eqmarl_sync_uploads_later(
    tmp_path, clean_env, vanishing_server
):
    """Old main: ``finish()`` waits for the vanished server for good (the run never ends)."""
    run_dir = tmp_path / "run"
    over = [*WANDB_RUN, "logger.wandb_finish_timeout_s=3", "train.max_iterations=2", f"hydra.run.dir={run_dir}"]
    t0 = time.monotonic()
    p = run_ok(launch_cmd(*over), env=wandb_env(clean_env, vanishing_server.port), timeout=150)
    assert time.monotonic() - t0 < 120
    assert vanishing_server.vanished.is_set() and "W&B did not start online" not in p.stderr  # it started online
    run_id = load_checkpoint(resolve_checkpoint(run_dir))["wandb_run_id"]
    (online,) = sorted((run_dir / "wandb").glob(f"run-*-{run_id}"))
    assert (
        f"W&B did not finish uploading run {run_id} within logger.wandb_finish_timeout_s=3 s" in p.stderr
        and f"its files stay in {online}; upload later with: eqmarl sync {run_dir}" in p.stderr
    )
    assert "Traceback" not in p.stderr
    assert [int(r["iteration"]) for r in csv.DictReader((run_dir / "metrics.csv").open())] == [1, 2]
    assert [h["iteration"] for h in read_wandb_history(online) if "iteration" in h] == [1, 2]
    # the server is back: `eqmarl sync` uploads the online run that did not finish
    back = FakeWandb()
    try:
        p = subprocess.run(
            [sys.executable, "-m", "eqmarl.cli", "sync", str(run_dir), "--timeout", "60"],
            cwd=tmp_path,  # wandb sync writes a wandb/ folder in its working directory
            capture_output=True,
            text=True,
            env=wandb_env(clean_env, back.port),
            timeout=120,
            check=False,
        )
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
        assert [h["iteration"] for h in back.history if "iteration" in h] == [1, 2]
    finally:
        back.close()


def test_a_good_server_finishes_without_a_warning(tmp_path):
    """The finish bound changes nothing while the server answers: no warning, no sync marker."""
    from eqmarl.train.logger import NOT_UPLOADED_MARKER, WandbLogger
    from tests.conftest import compose

    server = FakeWandb()
    env = {"WANDB_API_KEY": API_KEY, "WANDB_BASE_URL": f"http://127.0.0.1:{server.port}", "WANDB_SILENT": "true"}
    old = {k: os.environ.get(k) for k in (*env, "WANDB_MODE")}
    os.environ.update(env)
    os.environ.pop("WANDB_MODE", None)
    try:
        cfg = compose(["logger.wandb_mode=online", "logger.wandb_finish_timeout_s=20"]).logger
        wb = WandbLogger(cfg, tmp_path, {"seed": 0}, None, "test")
        wb.log({"iteration": 1, "env_steps": 10, "loss": 0.5})
        wb.finish()
    finally:
        server.close()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert [h["iteration"] for h in server.history if "iteration" in h] == [1]
    assert not list(tmp_path.rglob(NOT_UPLOADED_MARKER))


def test_wandb_finish_timeout_must_be_a_positive_finite_number(tmp_path, clean_env):
    for bad in ("0", "nan"):
        p = subprocess.run(
            launch_cmd(*TINY, f"logger.wandb_finish_timeout_s={bad}", f"hydra.run.dir={tmp_path / bad}"),
            capture_output=True,
            text=True,
            env=clean_env,
            timeout=120,
            check=False,
        )
        assert p.returncode == 2, p.stderr[-2000:]
        assert "logger.wandb_finish_timeout_s" in p.stderr and "allowed: a finite number" in p.stderr
