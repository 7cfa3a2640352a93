"""Install StarCraft II 4.10 (Linux) and the SMACv2 maps: ``eqmarl install-sc2`` or ``containers/install-sc2``.

    eqmarl install-sc2 --accept-license [--dest ~/StarCraftII] [--url URL] [--maps-url URL]

Steps, each skipped when already done (so a second run does nothing, and an interrupted
download continues where it stopped):

1. download ``SC2.4.10.zip`` (resumed with HTTP ``Range``) and check its SHA-256;
2. unzip it with the EULA password, only with ``--accept-license`` or
   ``EQMARL_SC2_ACCEPT_LICENSE=yes``: that is accepting Blizzard's "AI and Machine
   Learning License" (:data:`LICENSE_URL`), which the archive's password stands for;
3. download the SMACv2 maps zip, check its SHA-256, put its maps in ``Maps/SMAC_Maps/``;
4. verify ``Versions/Base75689/SC2_x64`` and ``Maps/SMAC_Maps/32x32_flat.SC2Map``, and
   print the ``SC2PATH`` to use.

Standard library only: the image build runs it before eqmarl is installed.  Exit codes:
0 done, 2 refused (licence not accepted, bad arguments), 3 checksum mismatch or broken
archive, 4 disk full or I/O error, 5 download failed.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import http.client
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SC2_URL = "https://blzdistsc2-a.akamaihd.net/Linux/SC2.4.10.zip"
# third-party value (Harimus/SpinningUpPySc2 install_sc2.sh); Blizzard publishes none
SC2_SHA256 = "1052f249f30a242bf5e17cc3315324919f9689307ca6dbcdb30bb41ea3004884"
MAPS_URL = "https://github.com/oxwhirl/smacv2/releases/download/maps/SMAC_Maps.zip"
# oxwhirl/smacv2 smacv2/env/starcraft2/maps/SMAC_Maps/SMAC_Maps.zip (515,016 bytes, 30 maps)
MAPS_SHA256 = "e507cc53b49f0ac334732d62628a42e0be2c53e9df29eeeaf608bb861a2a76cd"
LICENSE_URL = "http://blzdistsc2-a.akamaihd.net/AI_AND_MACHINE_LEARNING_LICENSE.html"
PASSWORD = b"iagreetotheeula"
BASE_VERSION = "Base75689"  # SC2 4.10
REQUIRED_MAP = "32x32_flat.SC2Map"  # every SMACv2 10gen_* scenario plays on it
ENV_ACCEPT = "EQMARL_SC2_ACCEPT_LICENSE"
CHUNK = 1 << 20


class InstallError(RuntimeError):
    """An installation step failed; ``code`` is the exit status."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _io_error(e: OSError, what: str) -> InstallError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return InstallError(f"disk full while {what} ({e}); free space or choose another --dest/--cache", 4)
    return InstallError(f"I/O error while {what}: {e}", 4)


def download(url: str, dest: Path, sha256: str | None, quiet: bool = False) -> Path:
    """Download ``url`` to ``dest`` (resuming a partial ``dest.part``), check SHA-256, return ``dest``.

    An existing ``dest`` with the right checksum is kept (nothing downloaded).  A
    mismatch deletes the file and raises: a corrupt or different archive is never used.
    """
    if dest.exists():
        if sha256 is None or sha256_of(dest) == sha256:
            return dest
        dest.unlink()  # a wrong file at the final name: download again
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            resumed = have > 0 and r.status == 206
            if have and not resumed:
                have = 0  # the server ignored Range: start over
            total = r.headers.get("Content-Length")
            if not quiet:
                print(
                    f"[install-sc2] {'resuming' if resumed else 'downloading'} {url} at byte {have}"
                    + (f" (+{int(total):,} bytes)" if total else ""),
                    file=sys.stderr,
                )
            with part.open("ab" if resumed else "wb") as f:
                shutil.copyfileobj(r, f, CHUNK)
                got = f.tell() - have
            if total is not None and got < int(total):  # the server closed the connection early
                raise InstallError(f"download interrupted: {url} after {have + got:,} bytes; run again to resume", 5)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the partial file is already complete
            pass
        else:
            raise InstallError(f"download failed: {url}: HTTP {e.code} {e.reason}", 5) from None
    except urllib.error.URLError as e:
        raise InstallError(f"download failed: {url}: {e.reason} (use --url to point at a local copy)", 5) from None
    except (http.client.HTTPException, TimeoutError, ConnectionError) as e:  # cut off: keep .part, resume next time
        raise InstallError(
            f"download interrupted: {url} ({type(e).__name__}); run again to resume "
            f"from byte {part.stat().st_size if part.exists() else 0}",
            5,
        ) from None
    except OSError as e:
        raise _io_error(e, f"writing {part}") from None
    if sha256 is not None:
        digest = sha256_of(part)
        if digest != sha256:
            part.unlink()
            raise InstallError(
                f"checksum mismatch for {url}: sha256 {digest}, expected {sha256}; the file was deleted "
                "(a broken or different archive; pass --sha256 only if you trust another one)",
                3,
            )
    part.replace(dest)
    return dest


def _unzip_tool(archive: Path, target: Path, password: bytes) -> None:
    """Info-ZIP ``unzip`` (Python's zipfile decrypts ZipCrypto byte by byte: hours for 4 GB)."""
    target.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(
        ["unzip", "-q", "-o", "-P", password.decode(), str(archive), "-d", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if p.returncode == 50:
        raise InstallError(f"disk full while unpacking {archive} into {target}: {p.stderr.strip()[-300:]}", 4)
    if p.returncode not in (0, 1):  # 1: warnings only
        raise InstallError(
            f"broken archive {archive} (unzip exit {p.returncode}: {p.stderr.strip()[-300:]}); delete it and run again",
            3,
        )


def _extract(archive: Path, target: Path, password: bytes | None, flat_into: str | None = None) -> None:
    """Unzip ``archive`` into ``target``; ``flat_into``: put every file (no folders) in ``target/flat_into``."""
    if password is not None and flat_into is None and shutil.which("unzip"):
        _unzip_tool(archive, target, password)
        return
    try:
        with zipfile.ZipFile(archive) as z:
            bad = z.testzip() if archive.stat().st_size < 64 * CHUNK else None  # CRC check of small archives
            if bad is not None:
                raise InstallError(f"broken archive {archive}: bad CRC in {bad}; delete it and run again", 3)
            for info in z.infolist():
                name = Path(info.filename)
                if name.is_absolute() or ".." in name.parts:
                    raise InstallError(f"refusing {archive}: unsafe path {info.filename}", 3)
                if flat_into is not None:
                    if info.is_dir():
                        continue
                    out = target / flat_into / name.name
                else:
                    out = target / name
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info, pwd=password) as src, out.open("wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK)
                mode = (info.external_attr >> 16) & 0o777
                os.chmod(out, (mode or 0o644) | 0o444 | (0o111 if mode & 0o111 else 0))
    except zipfile.BadZipFile as e:
        raise InstallError(f"broken archive {archive}: {e}; delete it and run again", 3) from None
    except RuntimeError as e:  # zipfile: bad password / encrypted without password
        raise InstallError(f"cannot unzip {archive}: {e}", 3) from None
    except OSError as e:
        raise _io_error(e, f"unpacking {archive}") from None


def verify(sc2path: Path) -> list[str]:
    """What is missing from an installation (empty: complete)."""
    missing = []
    exe = sc2path / "Versions" / BASE_VERSION / "SC2_x64"
    if not exe.is_file():
        missing.append(str(exe))
    elif not os.access(exe, os.X_OK):
        missing.append(f"{exe} (not executable)")
    if not (sc2path / "Maps" / "SMAC_Maps" / REQUIRED_MAP).is_file():
        missing.append(str(sc2path / "Maps" / "SMAC_Maps" / REQUIRED_MAP))
    return missing


def install(
    dest: Path,
    url: str = SC2_URL,
    sha256: str | None = SC2_SHA256,
    maps_url: str = MAPS_URL,
    maps_sha256: str | None = MAPS_SHA256,
    accept_license: bool = False,
    cache: Path | None = None,
    keep_archive: bool = True,
    quiet: bool = False,
) -> Path:
    """Install SC2 4.10 and the SMACv2 maps so that ``dest`` is the SC2PATH; returns it.

    Args:
        dest: the SC2PATH to create (the archive's ``StarCraftII/`` folder is moved there).
        url, sha256: the SC2 archive and its checksum (None: do not check; not advised).
        maps_url, maps_sha256: the SMACv2 maps zip and its checksum.
        accept_license: the user accepts Blizzard's AI and Machine Learning License.
        cache: where downloads are kept (default: ``dest``'s parent).
        keep_archive: keep the downloaded zips (a rerun then needs no download).
    """
    dest = dest.expanduser().absolute()
    if not verify(dest) and (dest / ".eqmarl-installed").exists():
        if not quiet:
            print(f"[install-sc2] already installed at {dest}", file=sys.stderr)
        return dest
    if not accept_license:
        raise InstallError(
            "StarCraft II is unzipped only when you accept Blizzard's AI and Machine Learning License "
            f"({LICENSE_URL}): the archive's password stands for that acceptance. Read it, then pass "
            f"--accept-license or set {ENV_ACCEPT}=yes.",
            2,
        )
    cache = (cache or dest.parent).absolute()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _io_error(e, f"creating {cache}") from None
    exe = dest / "Versions" / BASE_VERSION / "SC2_x64"
    if not exe.is_file():
        archive = download(url, cache / Path(url.split("?")[0]).name, sha256, quiet)
        staging = dest.parent / f".{dest.name}.unpack"
        shutil.rmtree(staging, ignore_errors=True)
        _extract(archive, staging, PASSWORD)
        top = staging / "StarCraftII"
        if not top.is_dir():
            raise InstallError(f"broken archive {archive}: no StarCraftII/ folder at its top", 3)
        if dest.exists():  # an earlier, incomplete install: replace it
            shutil.rmtree(dest)
        top.replace(dest)
        shutil.rmtree(staging, ignore_errors=True)
        if not keep_archive:
            archive.unlink()
    for folder in ("Maps", "Replays"):  # "you may need to create some folders if they are missing"
        (dest / folder).mkdir(exist_ok=True)
    if not (dest / "Maps" / "SMAC_Maps" / REQUIRED_MAP).is_file():
        maps = download(maps_url, cache / "SMACv2_Maps.zip", maps_sha256, quiet)
        _extract(maps, dest / "Maps", None, flat_into="SMAC_Maps")
    missing = verify(dest)
    if missing:
        raise InstallError(
            "installation incomplete, missing: " + ", ".join(missing) + f" (is the archive SC2 4.10, {BASE_VERSION}?)",
            3,
        )
    (dest / ".eqmarl-installed").write_text(f"{url}\n{maps_url}\n")
    return dest


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors naming the argument (exit 2), as the rest of ``eqmarl``."""

    def error(self, message: str) -> Any:  # argparse's signature returns NoReturn
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _url(text: str) -> str:
    """An argparse type: an http, https, ftp or file URL."""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("http", "https", "ftp", "file") or not rest:
        raise argparse.ArgumentTypeError(f"{text!r}; allowed: an http://, https://, ftp:// or file:// URL")
    return text


def _sha256(text: str) -> str:
    """An argparse type: 64 hexadecimal digits, or ``none``."""
    if text != "none" and not (len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)):
        raise argparse.ArgumentTypeError(f"{text!r}; allowed: a SHA-256 (64 hexadecimal digits) or none")
    return text.lower()


def _dir(text: str) -> str:
    """An argparse type: a directory path (missing ones are created), not an existing file."""
    p = Path(text).expanduser()
    if not text or (p.exists() and not p.is_dir()):
        raise argparse.ArgumentTypeError(f"{text!r}; allowed: a directory (this is a file)")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    ap = _Parser(
        prog="eqmarl install-sc2",
        description=__doc__.split("\n\n")[0],
        epilog="examples:\n"
        "  eqmarl install-sc2 --accept-license --dest ~/StarCraftII   # then: export SC2PATH=~/StarCraftII\n"
        "  eqmarl install-sc2 --accept-license --dest /opt/StarCraftII --no-keep-archive   # in an image build",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--dest",
        type=_dir,
        default=os.environ.get("SC2PATH", "~/StarCraftII"),
        help="SC2PATH to create (default: $SC2PATH or ~/StarCraftII)",
    )
    ap.add_argument(
        "--url", type=_url, default=os.environ.get("EQMARL_SC2_URL", SC2_URL), help="SC2 4.10 archive (http/https URL)"
    )
    ap.add_argument(
        "--sha256", type=_sha256, default=SC2_SHA256, help="expected SHA-256 of the archive ('none': no check)"
    )
    ap.add_argument(
        "--maps-url", type=_url, default=os.environ.get("EQMARL_SC2_MAPS_URL", MAPS_URL), help="SMACv2 maps zip"
    )
    ap.add_argument(
        "--maps-sha256", type=_sha256, default=MAPS_SHA256, help="expected SHA-256 of the maps zip ('none': no check)"
    )
    ap.add_argument(
        "--accept-license",
        action="store_true",
        help=f"accept Blizzard's AI and Machine Learning License ({LICENSE_URL}); or {ENV_ACCEPT}=yes",
    )
    ap.add_argument("--cache", type=_dir, default=None, help="where downloads are kept (default: beside --dest)")
    ap.add_argument("--no-keep-archive", action="store_true", help="delete the SC2 zip after unpacking (image builds)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    accept = a.accept_license or os.environ.get(ENV_ACCEPT, "").lower() in ("1", "yes", "true")
    try:
        path = install(
            Path(a.dest),
            a.url,
            None if a.sha256 == "none" else a.sha256,
            a.maps_url,
            None if a.maps_sha256 == "none" else a.maps_sha256,
            accept,
            Path(a.cache) if a.cache else None,
            not a.no_keep_archive,
            a.quiet,
        )
    except InstallError as e:
        print(f"eqmarl install-sc2: {e}", file=sys.stderr)
        return e.code
    print(f"export SC2PATH={path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
