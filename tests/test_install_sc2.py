"""The StarCraft II installer against a local HTTP server serving a *stand-in* archive.

StarCraft II cannot be downloaded on these machines.  The stand-in has the real
archive's layout (``StarCraftII/Versions/Base75689/SC2_x64``, ``Libs/``, ``Maps/``, ...),
is zipped with the real EULA password, and its ``SC2_x64`` is a shell script, not the
game.  The maps stand-in is a flat zip like SMACv2's release asset.  The server honours
HTTP Range requests, counts requests, and can drop the connection half-way.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import random
import shutil
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from eqmarl import install_sc2
from eqmarl.install_sc2 import BASE_VERSION, PASSWORD, REQUIRED_MAP, install, verify

ROOT = Path(__file__).resolve().parents[1]


def make_standin_sc2(dest: Path) -> Path:
    """A stand-in SC2.4.10.zip: the real layout, the real password, a fake binary."""
    if shutil.which("zip") is None:
        pytest.skip("zip (Info-ZIP) not installed: cannot make a password-protected stand-in archive")
    tree = dest / "tree"
    sc2 = tree / "StarCraftII"
    for d in ("Battle.net", "Maps", "Replays", "SC2Data", "Libs", f"Versions/{BASE_VERSION}"):
        (sc2 / d).mkdir(parents=True)
    exe = sc2 / "Versions" / BASE_VERSION / "SC2_x64"
    exe.write_text("#!/bin/sh\necho 'stand-in for StarCraft II 4.10 (B75689), not the game'\n")
    exe.chmod(0o755)
    (sc2 / "Libs" / "libstdc++.so.6").write_bytes(b"stand-in")
    (sc2 / "SC2Data" / "padding.bin").write_bytes(random.Random(0).randbytes(512 * 1024))  # incompressible
    archive = dest / "SC2.4.10.zip"
    subprocess.run(["zip", "-q", "-r", "-P", PASSWORD.decode(), str(archive), "StarCraftII"], cwd=tree, check=True)
    return archive


def make_standin_maps(dest: Path) -> Path:
    archive = dest / "SMAC_Maps.zip"
    with zipfile.ZipFile(archive, "w") as z:  # flat, like oxwhirl/smacv2's "maps" release asset
        for name in (REQUIRED_MAP, "32x32_small.SC2Map", "10gen_protoss.SC2Map", "3m.SC2Map"):
            z.writestr(name, f"stand-in map {name}")
    return archive


class Server:
    """A local HTTP server over a directory with Range support, a request log and a cut-off switch."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cut_after: int | None = None  # send only this many bytes of the next response, then close
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                outer.requests.append((self.path, rng))
                f = outer.root / self.path.lstrip("/")
                if not f.is_file():
                    self.send_error(404)
                    return
                data = f.read_bytes()
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(data):
                    self.send_error(416)
                    return
                body = data[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body)))
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if outer.cut_after is not None:
                    self.wfile.write(body[: outer.cut_after])
                    outer.cut_after = None
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, Path, Path]]:
    www = tmp_path / "www"
    www.mkdir()
    sc2, maps = make_standin_sc2(www), make_standin_maps(www)
    server = Server(www)
    yield server, sc2, maps
    server.close()


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / "containers" / "install-sc2"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_installs_standin_layout_then_does_nothing(served, tmp_path):
    server, sc2, maps = served
    dest = tmp_path / "sc2" / "StarCraftII"
    args = [
        "--dest",
        str(dest),
        "--url",
        f"{server.url}/{sc2.name}",
        "--sha256",
        sha(sc2),
        "--maps-url",
        f"{server.url}/{maps.name}",
        "--maps-sha256",
        sha(maps),
        "--accept-license",
    ]
    p = run_cli(*args)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"export SC2PATH={dest}"
    assert verify(dest) == []
    exe = dest / "Versions" / BASE_VERSION / "SC2_x64"
    assert "stand-in" in exe.read_text() and exe.stat().st_mode & 0o111
    assert {p.name for p in (dest / "Maps" / "SMAC_Maps").iterdir()} >= {REQUIRED_MAP, "3m.SC2Map"}
    assert (dest / "Libs" / "libstdc++.so.6").exists() and (dest / "Replays").is_dir()
    assert [r[0] for r in server.requests] == [f"/{sc2.name}", f"/{maps.name}"]
    # idempotent: a second run downloads nothing and changes nothing
    server.requests.clear()
    p = run_cli(*args)
    assert p.returncode == 0 and server.requests == [], (p.stderr, server.requests)
    assert "already installed" in p.stderr
    # the env var is an explicit acceptance too
    env = dict(os.environ, EQMARL_SC2_ACCEPT_LICENSE="yes")
    p = run_cli(*[a for a in args if a != "--accept-license"], env=env)
    assert p.returncode == 0


def test_refuses_without_licence_acceptance(served, tmp_path, monkeypatch):
    server, sc2, _maps = served
    monkeypatch.delenv("EQMARL_SC2_ACCEPT_LICENSE", raising=False)
    dest = tmp_path / "StarCraftII"
    p = run_cli("--dest", str(dest), "--url", f"{server.url}/{sc2.name}", "--sha256", sha(sc2))
    assert p.returncode == 2
    assert "AI and Machine Learning License" in p.stderr and "--accept-license" in p.stderr
    assert not dest.exists() and server.requests == []  # nothing downloaded, nothing unpacked


def test_checksum_mismatch_fails_loudly_and_deletes_the_file(served, tmp_path):
    server, sc2, _maps = served
    dest = tmp_path / "StarCraftII"
    p = run_cli("--dest", str(dest), "--url", f"{server.url}/{sc2.name}", "--accept-license")  # the real SC2 checksum
    assert p.returncode == 3
    assert "checksum mismatch" in p.stderr and install_sc2.SC2_SHA256 in p.stderr
    assert not dest.exists() and list(tmp_path.glob("SC2.4.10.zip*")) == []


def test_interrupted_download_resumes_with_range(served, tmp_path):
    server, sc2, maps = served
    dest = tmp_path / "StarCraftII"
    kw = {
        "url": f"{server.url}/{sc2.name}",
        "sha256": sha(sc2),
        "maps_url": f"{server.url}/{maps.name}",
        "maps_sha256": sha(maps),
        "accept_license": True,
        "quiet": True,
    }
    server.cut_after = 200_000
    with pytest.raises(install_sc2.InstallError) as e:
        install(dest, **kw)
    assert e.value.code == 5
    part = tmp_path / "SC2.4.10.zip.part"
    assert part.stat().st_size == 200_000
    server.requests.clear()
    install(dest, **kw)
    assert server.requests[0] == (f"/{sc2.name}", "bytes=200000-")
    assert verify(dest) == [] and (tmp_path / "SC2.4.10.zip").read_bytes() == sc2.read_bytes()


def test_broken_archive_and_missing_base_version(served, tmp_path):
    server, _sc2, maps = served
    (server.root / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip" * 100)
    p = run_cli(
        "--dest", str(tmp_path / "a"), "--url", f"{server.url}/broken.zip", "--sha256", "none", "--accept-license"
    )
    assert p.returncode == 3 and "broken archive" in p.stderr
    # an archive of another SC2 version: installed files, but not 4.10
    other = tmp_path / "other"
    (other / "StarCraftII" / "Versions" / "Base69232").mkdir(parents=True)
    (other / "StarCraftII" / "Versions" / "Base69232" / "SC2_x64").write_text("#!/bin/sh\n")
    subprocess.run(
        ["zip", "-q", "-r", "-P", PASSWORD.decode(), str(server.root / "old.zip"), "StarCraftII"], cwd=other, check=True
    )
    p = run_cli(
        "--dest",
        str(tmp_path / "b"),
        "--url",
        f"{server.url}/old.zip",
        "--sha256",
        "none",
        "--maps-url",
        f"{server.url}/{maps.name}",
        "--maps-sha256",
        sha(maps),
        "--accept-license",
    )
    assert p.returncode == 3 and f"{BASE_VERSION}/SC2_x64" in p.stderr


def test_unreachable_server_names_the_url(tmp_path):
    p = run_cli("--dest", str(tmp_path / "s"), "--url", "http://127.0.0.1:9/SC2.4.10.zip", "--accept-license")
    assert p.returncode == 5 and "127.0.0.1:9" in p.stderr and "--url" in p.stderr


def test_disk_full_is_reported(served, tmp_path):
    """A 256 KiB tmpfs as the download cache (root only: mount)."""
    server, sc2, _maps = served
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)], capture_output=True, check=False
    ).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        p = run_cli(
            "--dest",
            str(tmp_path / "d"),
            "--cache",
            str(small),
            "--url",
            f"{server.url}/{sc2.name}",
            "--sha256",
            sha(sc2),
            "--accept-license",
        )
        assert p.returncode == 4 and "disk full" in p.stderr, p.stderr
    finally:
        subprocess.run(["umount", str(small)], check=False)
