"""Finding a container's cgroups through the engine's root, as agents inside Mininet nodes must."""

import json

import pytest

from testbed.containers.cgroups import CgroupError, CgroupMeter, ContainerCgroups
from testbed.containers.freezer import Freezer

V1 = {c: f"/sys/fs/cgroup/{c}/docker/abc" for c in ("cpu", "cpuacct", "memory", "freezer")}
V2 = {"": "/sys/fs/cgroup/system.slice/docker-abc.scope"}


def layout(tmp_path, paths, files):
    engine_root = tmp_path / "root"
    for controller_path in set(paths.values()):
        (engine_root / controller_path.lstrip("/")).mkdir(parents=True)
    for path, text in files.items():
        (engine_root / path.lstrip("/")).write_text(text)
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"cgroup_paths": paths}))
    return ContainerCgroups(state, engine_root)


def test_v1_meter_reads_cpuacct_and_memory_under_the_engine_root(tmp_path):
    cpu = "/sys/fs/cgroup/cpuacct/docker/abc/cpuacct.usage"
    cgroups = layout(tmp_path, V1, {cpu: "1000000000\n",
                                    "/sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes": "4096\n"})
    meter = CgroupMeter(cgroups)
    assert not cgroups.v2 and meter.memory_bytes() == 4096
    assert meter.cpu_cores() is None                       # the first sample has nothing to compare with
    meter.last = (meter.last[0] - 2.0, meter.last[1])      # as if it had been taken 2 s ago
    (tmp_path / "root" / cpu.lstrip("/")).write_text("2000000000\n")
    assert meter.cpu_cores() == pytest.approx(0.5, rel=0.01)
    assert Freezer(cgroups).dir == tmp_path / "root/sys/fs/cgroup/freezer/docker/abc"


def test_v2_meter_reads_the_unified_directory(tmp_path):
    base = V2[""]
    cgroups = layout(tmp_path, V2, {f"{base}/cpu.stat": "usage_usec 3000\nuser_usec 2000\n",
                                    f"{base}/memory.current": "8192\n"})
    meter = CgroupMeter(cgroups)
    assert cgroups.v2 and meter.cpu_usage_ns() == 3_000_000 and meter.memory_bytes() == 8192


def test_a_missing_cgroup_is_an_error_not_an_idle_container(tmp_path):
    with pytest.raises(CgroupError, match="no memory cgroup"):
        CgroupMeter(layout(tmp_path, {"cpuacct": V1["cpuacct"]}, {}))
    with pytest.raises(CgroupError, match="does not exist"):
        ContainerCgroups(tmp_path / "state.json", tmp_path / "elsewhere").dir("cpuacct")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(CgroupError, match="no cgroup paths"):
        ContainerCgroups(tmp_path / "bad.json", tmp_path)


@pytest.mark.parametrize("container_quota, expected", [("-1", 6666), ("20000", 6666), ("3333", 3333)])
def test_a_threads_quota_is_its_servers_speed_and_no_more_than_its_containers(tmp_path, container_quota, expected):
    """v1 refuses a child a larger share of a core than its parent."""
    from testbed.containers.thread_quota import ThreadQuota

    cpu = "/sys/fs/cgroup/cpu/docker/abc"
    cgroups = layout(tmp_path, V1, {f"{cpu}/cpu.cfs_quota_us": container_quota, f"{cpu}/cpu.cfs_period_us": "10000"})
    quota = ThreadQuota(cgroups, speed=1 / 1.5, period_us=10_000)
    assert quota.supported and quota.quota_us() == expected


def test_on_cgroup_v2_threads_keep_their_containers_quota_and_the_reason_is_given(tmp_path):
    from testbed.containers.thread_quota import ThreadQuota

    quota = ThreadQuota(layout(tmp_path, V2, {}), speed=0.5, period_us=10_000)
    assert not quota.supported and "v2" in quota.reason
    assert quota.spread() == 0 and quota.gather() == 0 and quota.threads() == {"own": 0, "shared": 0}
