"""App manifests: an app is one folder, discovered and validated; nothing else names it."""

from pathlib import Path

import pytest
import yaml

from testbed.config import ConfigError, app_manifest, app_names, discover_apps, load_experiment_with_source

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "topologies" / "paper.yaml"


def make_app(root: Path, name: str, manifest: dict | None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nCOPY server.py /srv/\n")
    (folder / "server.py").write_text("# a service\n")
    if manifest is not None:
        (folder / "app.yaml").write_text(yaml.safe_dump(manifest))
    return folder


def test_the_shipped_apps_have_valid_manifests():
    apps = discover_apps()
    assert set(apps) == {"alpr", "counter", "detect", "face"}
    assert apps["counter"].test_images == [] and apps["counter"].timeout == pytest.approx(0.5)
    assert apps["face"].label == "Face recognition" and apps["face"].memory_mb == 2048
    assert "centernet-coco.onnx" in apps["detect"].assets


def test_a_throwaway_app_folder_is_discovered_and_used_by_the_schema(tmp_path, monkeypatch):
    make_app(tmp_path, "echo", {"label": "Echo", "test_images": ["street-dog.jpg"], "cpus": 0.5,
                                "memory": "256MiB", "timeout": "300ms"})
    (tmp_path / "notes").mkdir()                       # a folder without a Dockerfile is not an app
    found = discover_apps(tmp_path)
    assert list(found) == ["echo"]
    assert (found["echo"].cpus, found["echo"].memory_mb, found["echo"].timeout) == (0.5, 256, pytest.approx(0.3))
    monkeypatch.setenv("MEC_APPS_DIR", str(tmp_path))
    assert app_names() == ["echo"] and app_manifest("echo").label == "Echo"
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(yaml.safe_dump({"name": "x", "topology": str(PAPER), "duration": "10s",
                                          "planners": ["nearest"], "users": {"mu": {"services": [{"app": "echo"}]}}}))
    spec, _ = load_experiment_with_source(experiment)
    [use] = spec.users["mu"].services
    assert (use.cpus, use.memory, use.images) == (0.5, 256 * 2**20, ["street-dog.jpg"])   # from the manifest


@pytest.mark.parametrize("manifest,field,reason", [
    ({"label": "x", "cpus": -1}, "cpus", "greater than 0"),
    ({"label": "x", "timeout": 2}, "timeout", "needs a unit"),
    ({"label": "x", "colour": "red"}, "colour", "unknown field"),
    ({"cpus": 1}, "label", "field required"),
])
def test_a_bad_manifest_names_its_file_and_field(tmp_path, manifest, field, reason):
    make_app(tmp_path, "broken", manifest)
    with pytest.raises(ConfigError) as caught:
        discover_apps(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "broken" / "app.yaml") in message
    line = next((l for l in message.splitlines() if l.strip().startswith(field)), None)
    assert line is not None and reason in line, message


def test_an_app_without_a_manifest_is_refused(tmp_path):
    make_app(tmp_path, "bare", None)
    with pytest.raises(ConfigError, match="needs app.yaml"):
        discover_apps(tmp_path)
