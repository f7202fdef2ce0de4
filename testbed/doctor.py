"""``testbed doctor``: what this host has and lacks, with a one-line fix per gap.

Every check really exercises the feature (a netem qdisc is added, a bridge is
made, CRIU dumps and restores a process with a listening TCP socket), because
"installed" is not "works on this kernel".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from testbed.containers.criu import CRIU_ACTION_SCRIPT, CRIU_ACTION_TEXT, CRIU_CONFIG, CRIU_CONFIG_TEXT
from testbed.net.links import kernel_has_netem
from testbed.net.namespaces import TRANSIENT_PREFIX

@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def _run(args, timeout=30, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)


def check_root() -> Check:
    ok = os.geteuid() == 0
    return Check("root", ok, "running as root" if ok else f"uid {os.geteuid()}",
                 "run the testbed as root (namespaces, tc and CRIU need it)")


def check_tools() -> list[Check]:
    wanted = {
        "mnexec": "apt-get install mininet",
        "tc": "apt-get install iproute2",
        "ethtool": "apt-get install ethtool",
        "iperf3": "apt-get install iperf3",
        "rsync": "apt-get install rsync",
        "debootstrap": "apt-get install debootstrap",
    }
    checks = []
    for tool, fix in wanted.items():
        path = shutil.which(tool)
        checks.append(Check(f"tool {tool}", bool(path), path or "not found", fix))
    try:
        import mininet.net  # noqa: F401

        checks.append(Check("mininet python", True, "importable"))
    except ImportError as exc:
        checks.append(Check("mininet python", False, str(exc), "./setup.sh (links Debian's mininet into .venv)"))
    return checks


def check_netem() -> Check:
    ok, detail = kernel_has_netem()
    return Check("sch_netem", ok, detail,
                 "none needed: links use the userspace delay line backend instead", required=False)


def check_bridge_and_veth() -> list[Check]:
    ns = f"{TRANSIENT_PREFIX}doctor{os.getpid()}"
    results = []
    try:
        _run(["ip", "netns", "add", ns])
        veth = _run(["ip", "-n", ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1"])
        results.append(Check("veth", veth.returncode == 0, veth.stderr.strip() or "veth pair created",
                             "kernel needs CONFIG_VETH"))
        bridge = _run(["ip", "-n", ns, "link", "add", "br0", "type", "bridge"])
        results.append(Check("linux bridge", bridge.returncode == 0,
                             bridge.stderr.strip() or "bridge created", "kernel needs CONFIG_BRIDGE"))
        htb = _run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "d0", "root", "handle", "1:", "htb"])
        results.append(Check("tc htb", htb.returncode == 0, htb.stderr.strip() or "htb qdisc added",
                             "kernel needs CONFIG_NET_SCH_HTB"))
    finally:
        _run(["ip", "netns", "delete", ns])
    return results


def check_buffers() -> Check:
    rmem = int(Path("/proc/sys/net/core/rmem_max").read_text())
    wmem = int(Path("/proc/sys/net/core/wmem_max").read_text())
    ok = min(rmem, wmem) >= 32 * 1024 * 1024
    return Check("socket buffers", ok, f"rmem_max={rmem} wmem_max={wmem}",
                 "sysctl -w net.core.rmem_max=67108864 net.core.wmem_max=67108864 "
                 "(TCP windows must cover 75 Mbit/s x 300 ms)")


def docker_info() -> dict | None:
    try:
        import docker

        return docker.from_env(timeout=5).info()
    except Exception:
        return None


def check_docker() -> list[Check]:
    info = docker_info()
    if info is None:
        return [Check("docker engine", False, "no engine answers on /var/run/docker.sock",
                      "./setup.sh (installs docker.io and starts dockerd)")]
    checks = [Check("docker engine", True, f"{info.get('ServerVersion')} ({info.get('Driver')}, "
                    f"cgroup {info.get('CgroupVersion')})")]
    checks.append(Check("docker experimental", bool(info.get("ExperimentalBuild")),
                        "enabled" if info.get("ExperimentalBuild") else "disabled",
                        'add {"experimental": true} to /etc/docker/daemon.json and restart dockerd'))
    return checks


def criu_version() -> str | None:
    path = shutil.which("criu")
    if not path:
        return None
    out = _run([path, "--version"]).stdout
    for line in out.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return out.strip() or None


PROBE_SERVER = (
    "import socket,sys,time\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', 0)); s.listen(4)\n"
    "open(sys.argv[1], 'w').write(str(s.getsockname()[1]))\n"
    "while True:\n"
    "    c, _ = s.accept(); c.sendall(b'alive'); c.close()\n"
)


def criu_tcp_roundtrip() -> tuple[bool, str]:
    """Dump a process with a listening TCP socket, restore it, connect to it."""
    ns = f"{TRANSIENT_PREFIX}doctor-criu{os.getpid()}"
    criu = shutil.which("criu")
    if not criu:
        return False, "criu not installed"
    workdir = Path(tempfile.mkdtemp(prefix="tb-criu-"))
    restored_pid = None
    try:
        _run(["ip", "netns", "add", ns])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        port_file = workdir / "port"
        # nsenter (not "ip netns exec", which adds a mount namespace) and CRIU
        # runs in the same namespace: the namespace itself is not part of the dump.
        enter = ["nsenter", f"--net=/run/netns/{ns}"]
        server = subprocess.Popen(
            enter + ["setsid", sys.executable, "-c", PROBE_SERVER, str(port_file)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline:
                return False, "probe server did not start"
            time.sleep(0.05)
        port = int(port_file.read_text())
        pid = _run(["ip", "netns", "pids", ns]).stdout.split()
        target = [p for p in pid if Path(f"/proc/{p}/cmdline").read_bytes().find(b"socket") >= 0]
        if not target:
            return False, "cannot find the probe process"
        images = workdir / "images"
        images.mkdir()
        dump = _run(enter + [criu, "dump", "-t", target[0], "-D", str(images), "-o", "dump.log"],
                    timeout=60)
        server.wait(timeout=10)
        if dump.returncode != 0:
            tail = (images / "dump.log").read_text()[-600:] if (images / "dump.log").exists() else ""
            return False, f"dump failed: {tail.strip().splitlines()[-1] if tail.strip() else dump.stderr}"
        pidfile = workdir / "restored.pid"
        restore = _run(enter + [criu, "restore", "-D", str(images), "-o", "restore.log",
                                "-d", "--pidfile", str(pidfile)], timeout=60)
        if restore.returncode != 0:
            tail = (images / "restore.log").read_text()[-600:] if (images / "restore.log").exists() else ""
            return False, f"restore failed: {tail.strip().splitlines()[-1] if tail.strip() else restore.stderr}"
        restored_pid = int(pidfile.read_text())
        reply = _run(enter + [sys.executable, "-c",
                      f"import socket; s=socket.create_connection(('127.0.0.1',{port}),5); "
                      "print(s.recv(16).decode())"])
        if reply.stdout.strip() != "alive":
            return False, f"restored process does not answer on its socket: {reply.stderr.strip()}"
        return True, f"dumped and restored a listening TCP server (port {port})"
    except subprocess.TimeoutExpired:
        return False, "criu timed out"
    finally:
        if restored_pid:
            _run(["kill", "-9", str(restored_pid)])
        for leftover in _run(["ip", "netns", "pids", ns]).stdout.split():
            _run(["kill", "-9", leftover])
        _run(["ip", "netns", "delete", ns])
        shutil.rmtree(workdir, ignore_errors=True)


def check_criu() -> list[Check]:
    version = criu_version()
    if version is None:
        return [Check("criu", False, "not installed", "./setup.sh (builds criu 4.2.1 if the packaged one fails)")]
    checks = [Check("criu", True, f"version {version} at {shutil.which('criu')}")]
    ok, detail = criu_tcp_roundtrip()
    checks.append(Check("criu tcp checkpoint", ok, detail,
                        "./setup.sh builds criu 4.2.1 from Debian's source archive "
                        "(3.17 fails on vDSO, 4.1 on TCP sockets of kernels >= 6.16)"))
    dirty = _run(["criu", "check", "--feature", "mem_dirty_track"])
    has_dirty = dirty.returncode == 0
    checks.append(Check("soft-dirty tracking", has_dirty,
                        "available: pre-dump works" if has_dirty else
                        "kernel lacks CONFIG_MEM_SOFT_DIRTY: no pre-dump",
                        "none needed: precopy-delta computes the delta between two full dumps",
                        required=False))
    config_ok = (CRIU_CONFIG.exists() and CRIU_CONFIG.read_text() == CRIU_CONFIG_TEXT
                 and CRIU_ACTION_SCRIPT.exists() and CRIU_ACTION_SCRIPT.read_text() == CRIU_ACTION_TEXT)
    checks.append(Check("runc criu config", config_ok,
                        f"{CRIU_CONFIG}, {CRIU_ACTION_SCRIPT}" if config_ok else
                        f"{CRIU_CONFIG} or {CRIU_ACTION_SCRIPT} missing or not the testbed's",
                        "./setup.sh (writes them)"))
    checks.append(check_postcopy())
    cache = Path("/run/criu/criu.kdat")
    cached = cache.exists()
    checks.append(Check("criu kernel-probe cache", cached,
                        f"{cache}" if cached else "CRIU probes the kernel on every dump and restore (~50 ms each)",
                        "./setup.sh (mounts a tmpfs at /run/criu and builds CRIU to keep its cache there)",
                        required=False))
    return checks


def check_postcopy() -> Check:
    """The post-copy mode's needs: userfaultfd for CRIU, the runtime wrapper Docker knows, big pipes."""
    import json

    from testbed.containers.criu import LAZY_RUNTIME, LAZY_RUNTIME_PATH, LAZY_RUNTIME_TEXT

    problems = []
    if _run(["criu", "check", "--feature", "uffd-noncoop"]).returncode != 0:
        problems.append("the kernel has no non-cooperative userfaultfd")
    if not LAZY_RUNTIME_PATH.exists() or LAZY_RUNTIME_PATH.read_text() != LAZY_RUNTIME_TEXT:
        problems.append(f"{LAZY_RUNTIME_PATH} missing or not the testbed's")
    try:
        runtimes = json.loads(Path("/etc/docker/daemon.json").read_text()).get("runtimes", {})
    except (OSError, ValueError):
        runtimes = {}
    if runtimes.get(LAZY_RUNTIME, {}).get("path") != str(LAZY_RUNTIME_PATH):
        problems.append(f"Docker's daemon.json lacks the runtime {LAZY_RUNTIME}")
    if int(Path("/proc/sys/fs/pipe-max-size").read_text()) < 16 * 2**20:
        problems.append("fs.pipe-max-size below 16 MB (CRIU's page server fails)")
    return Check("post-copy (lazy pages)", not problems, "; ".join(problems) or
                 f"userfaultfd, runtime {LAZY_RUNTIME}, 16 MB pipes", "./setup.sh", required=False)


def check_images() -> Check:
    from testbed import images

    try:
        client = images.docker_client()
        present = {tag for image in client.images.list() for tag in image.tags}
    except Exception:
        return Check("service images", False, "no engine to ask", "./setup.sh")
    wanted = [images.image_name(app) for app in images.app_names()] + [images.BASE_IMAGE]
    missing = [name for name in wanted if name not in present]
    return Check("service images", not missing,
                 "all built" if not missing else f"missing: {', '.join(missing)}",
                 "./setup.sh (or: testbed images build)")


def run_checks() -> list[Check]:
    checks = [check_root()]
    checks += check_tools()
    checks += check_bridge_and_veth()
    checks.append(check_netem())
    checks.append(check_buffers())
    checks += check_docker()
    checks += check_criu()
    checks.append(check_images())
    return checks


def as_json(checks: list[Check]) -> str:
    return json.dumps([asdict(c) for c in checks], indent=2)


def probe_criu_main() -> int:
    """Exit 0 if CRIU can checkpoint and restore a TCP server here (used by setup.sh)."""
    ok, detail = criu_tcp_roundtrip()
    print(detail)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(probe_criu_main())
