"""Remove every container the testbed started (label ``org.mec-testbed``) and every server
cgroup (``/mec-testbed/<server>``), and nothing else."""

from __future__ import annotations

from pathlib import Path

from testbed.containers.server import TESTBED_LABEL, ContainerError, engine_pid
from testbed.containers.server_cgroup import remove_all
from testbed.net.clean import CleanReport


def testbed_containers() -> list[str]:
    """Ids of containers carrying the testbed label (empty if no engine answers)."""
    try:
        import docker
        client = docker.from_env(timeout=10)
        found = client.containers.list(all=True, filters={"label": TESTBED_LABEL})
        return [container.id for container in found]
    except Exception:  # no engine: nothing of ours can be running in it
        return []


def clean_containers(report: CleanReport | None = None) -> CleanReport:
    report = report or CleanReport()
    ids = testbed_containers()
    if ids:
        import docker
        client = docker.from_env(timeout=30)
        for cid in ids:
            try:
                client.containers.get(cid).remove(force=True)
                report.containers.append(cid[:12])
            except docker.errors.NotFound:
                pass
    return report


def clean_server_cgroups(report: CleanReport | None = None) -> CleanReport:
    """The servers' cgroups (once their containers are gone)."""
    report = report or CleanReport()
    try:
        root = Path(f"/proc/{engine_pid()}/root")
    except ContainerError:      # no engine: its cgroups went with it
        return report
    report.cgroups += remove_all(root)
    return report
