"""Build the service images locally, with no registry.

* The base image is a Debian ``minbase`` root filesystem made by debootstrap and
  imported into Docker (``mec-testbed/base:bookworm``): it plays the "base
  layer" of seed 001 and is present on every emulated server.
* Each service image is built FROM it out of ``apps/<name>/``.  The build
  context also receives the protocol module, the shared serve loop, a
  wheelhouse (Python wheels downloaded on the host, installed in the image with
  ``--no-index``) and any model or data files the app lists.
* An image records a hash of its whole context as a label; if the hash has not
  changed, nothing is rebuilt (a second set-up costs a second, not minutes).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from testbed.config.apps import PROJECT_APPS, app_manifest, app_names, apps_dir

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("MEC_CACHE", "/var/cache/mec-testbed"))
BASE_IMAGE = "mec-testbed/base:bookworm"
IMAGE_PREFIX = "mec-testbed/"
HASH_LABEL = "org.mec-testbed.context-hash"
DEBIAN_MIRROR = os.environ.get("MEC_DEBIAN_MIRROR", "http://deb.debian.org/debian")


class ImageBuildError(RuntimeError):
    pass


def docker_client():
    import docker

    return docker.from_env(timeout=600)


def image_name(app: str) -> str:
    """The local image of an app (built by ``build_app``)."""
    return f"{IMAGE_PREFIX}{app}:latest"


def _image_label(client, name: str, label: str) -> str | None:
    import docker

    try:
        return client.images.get(name).labels.get(label)
    except docker.errors.ImageNotFound:
        return None


def ensure_base(client, log=print) -> str:
    """Import the debootstrapped base image unless it is already there."""
    import docker

    try:
        client.images.get(BASE_IMAGE)
        return "present"
    except docker.errors.ImageNotFound:
        pass
    rootfs = CACHE / "rootfs-bookworm"
    if not (rootfs / "usr/bin/python3").exists():
        shutil.rmtree(rootfs, ignore_errors=True)
        rootfs.parent.mkdir(parents=True, exist_ok=True)
        log(f"debootstrap bookworm (minbase + python3) into {rootfs}")
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
             "bookworm", str(rootfs), DEBIAN_MIRROR], capture_output=True, text=True)
        if result.returncode != 0:
            raise ImageBuildError(f"debootstrap failed: {result.stderr[-2000:]}")
    # Keep the image small and reproducible: no apt lists or caches.
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (rootfs / junk).glob("*"):
            if item.is_file():
                item.unlink()
    log(f"importing {rootfs} as {BASE_IMAGE}")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(["docker", "import", "--change", "CMD [\"python3\"]", "-", BASE_IMAGE],
                              stdin=tar.stdout, capture_output=True, text=True)
    tar.wait()
    if imported.returncode != 0:
        raise ImageBuildError(f"docker import failed: {imported.stderr.strip()}")
    return "built"


PIP_TARGET = ["--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
              "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
              "--platform", "manylinux_2_17_x86_64", "--platform", "linux_x86_64"]


def wheelhouse(app: str, log=print) -> Path:
    """Download the app's wheels on the host (pip knows the host's proxy and CA).

    ``requirements.txt`` is resolved with dependencies; ``requirements-nodeps.txt``
    (packages whose declared dependencies must not be installed, e.g. a GUI
    OpenCV) without.  Both are pinned, for reproducible images."""
    source = apps_dir() / app
    files = [source / name for name in ("requirements.txt", "requirements-nodeps.txt") if (source / name).exists()]
    target = CACHE / "wheels" / app
    stamp = target / ".requirements"
    wanted = "\n".join(f.read_text() for f in files)
    if stamp.exists() and stamp.read_text() == wanted:
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for path in files:
        log(f"{app}: downloading wheels for {path.name}")
        extra = ["--no-deps"] if path.name.endswith("nodeps.txt") else []
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", *PIP_TARGET, *extra,
                                 "--dest", str(target), "-r", str(path)], capture_output=True, text=True)
        if result.returncode != 0:
            raise ImageBuildError(f"{app}: pip download failed: {result.stderr[-3000:]}")
    stamp.write_text(wanted)
    return target


def _stage_context(app: str, log=print) -> Path:
    """Assemble apps/<app> + shared files + wheels + assets into one build context."""
    source = apps_dir() / app
    context = CACHE / "build" / app
    shutil.rmtree(context, ignore_errors=True)
    shutil.copytree(source, context, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "app.yaml"))
    shutil.copy2(PROJECT_ROOT / "testbed" / "protocol.py", context / "protocol.py")
    shutil.copy2(PROJECT_APPS / "common" / "mecserve.py", context / "mecserve.py")
    (context / "wheels").mkdir(exist_ok=True)
    if (source / "requirements.txt").exists():
        for wheel in wheelhouse(app, log).glob("*.whl"):
            os.link(wheel, context / "wheels" / wheel.name)
    manifest = app_manifest(app)
    (context / "assets").mkdir(exist_ok=True)
    if manifest.assets:
        from testbed import assets

        for name in manifest.assets:
            path = assets.fetch(name, log=log)
            shutil.copy2(path, context / "assets" / path.name)
    return context


def context_hash(context: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(context)).encode())
        stat = path.stat()
        if path.suffix in (".whl",):  # wheels are immutable: name and size suffice
            digest.update(f"{stat.st_size}".encode())
        else:
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build_app(app: str, client=None, force: bool = False, log=print) -> str:
    client = client or docker_client()
    if app not in app_names():
        raise ImageBuildError(f"unknown app {app!r} (known: {', '.join(app_names())})")
    ensure_base(client, log)
    context = _stage_context(app, log)
    wanted = context_hash(context)
    name = image_name(app)
    if not force and _image_label(client, name, HASH_LABEL) == wanted:
        return "up to date"
    log(f"{app}: docker build -> {name}")
    result = subprocess.run(
        ["docker", "build", "--quiet", "--tag", name, "--label", f"{HASH_LABEL}={wanted}",
         "--build-arg", f"BASE={BASE_IMAGE}", str(context)],
        capture_output=True, text=True)
    if result.returncode != 0:
        raise ImageBuildError(f"{app}: docker build failed:\n{result.stderr[-4000:]}")
    return "built"


def build_all(apps: list[str] | None = None, force: bool = False, log=print) -> dict[str, str]:
    client = docker_client()
    return {app: build_app(app, client, force, log) for app in (apps or app_names())}


LAYER_MARKER = ".complete"


@contextlib.contextmanager
def exclusive(directory: Path):
    """One holder at a time of ``directory``'s lock file, across threads and processes (the agents
    of several servers may export or install the same layer at once)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def export_app_layer(app: str, client=None) -> Path:
    """The image's own layers above the base image (seed 001's application layer).

    Exported once per image build into ``$MEC_CACHE/layers/<app>/<image id>/``
    as the layer tarballs of ``docker save``; a marker file says it is complete.
    """
    client = client or docker_client()
    image = client.images.get(image_name(app))
    target = CACHE / "layers" / app / image.id.split(":")[-1][:16]
    if (target / LAYER_MARKER).exists():
        return target
    with exclusive(target.parent):
        if not (target / LAYER_MARKER).exists():
            _export(client, image, target)
    return target


def _export(client, image, target: Path) -> None:
    import tarfile

    base_layers = client.images.get(BASE_IMAGE).attrs["RootFS"]["Layers"]
    app_layers = image.attrs["RootFS"]["Layers"]
    if app_layers[: len(base_layers)] != base_layers:
        raise ImageBuildError(f"{target.parent.name}: image is not built on {BASE_IMAGE}")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    saved = target / "image.tar"
    with open(saved, "wb") as handle:
        for chunk in image.save(named=False):
            handle.write(chunk)
    with tarfile.open(saved) as archive:
        manifest = json.loads(archive.extractfile("manifest.json").read())
        layer_paths = manifest[0]["Layers"]
        for index, member in enumerate(layer_paths[len(base_layers):]):
            data = archive.extractfile(member)
            with open(target / f"layer-{index:02d}.tar", "wb") as out:
                shutil.copyfileobj(data, out)
    saved.unlink()
    (target / LAYER_MARKER).write_text(image.id)
