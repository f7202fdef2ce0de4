"""Docker containers wired into the emulated servers, as Containernet does.

Each service container shares the network namespace of a small *holder*
container (``sleep``, Docker networking disabled: no libnetwork hook), the way
a Kubernetes pod shares its sandbox's.  The testbed plugs the holder's
namespace into the server it runs on (a veth pair whose outer end joins the
server's bridge ``svc0``, gateway ``172.16.<j>.1``, and whose inner end becomes
``eth0``), so requests and migration transfers cross the shaped links of the
topology like any traffic.

The holder is created and wired when a container is *reserved*, before a
migration's downtime.  runc then treats the service's namespace as external:
CRIU neither dumps nor rebuilds it, and a restored service finds its network
ready, with nothing left to wire while the user waits.

Everything here addresses a server by its published namespace ``tb-<server>``,
so it works from the runner or from an agent running inside the server.
Containers carry the label ``org.mec-testbed`` (``testbed clean`` finds them).

Terms: a *server* is an emulated cloud or edge machine (a Mininet node); the
*host* is the one Linux machine everything runs on, with one Docker engine.
"""

from __future__ import annotations

import ipaddress
import math
import os
import shutil
import subprocess
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import docker

from testbed.containers.cgroups import CgroupError, CgroupMeter, ContainerCgroups
from testbed.containers.criu import ADDRESSES_FILE, LAZY_MARKER, LAZY_RUNTIME
from testbed.containers.freezer import Freezer
from testbed.containers.lazy import LazyCheckpoint, LazyError, LazyPagesDaemon
from testbed.containers.thread_quota import ThreadQuota
from testbed.net.namespaces import CONTAINER_BRIDGE, current_network, name_prefix, netns_name
from testbed.stopwatch import Stopwatch

TESTBED_LABEL = "org.mec-testbed"            # on every container the testbed starts
SERVER_LABEL = "org.mec-testbed.server"
SERVICE_LABEL = "org.mec-testbed.service"
APP_LABEL = "org.mec-testbed.app"
IP_LABEL = "org.mec-testbed.ip"
HOLDER_LABEL = "org.mec-testbed.holder"      # on a service container: its holder's id
NETNS_FOR_LABEL = "org.mec-testbed.netns-for"  # on a holder: the service it holds the network for
NETWORK_LABEL = "org.mec-testbed.network"    # the number of the network (of this host) it belongs to
STATE_ROOT = Path(os.environ.get("MEC_STATE", "/var/lib/mec-testbed"))
LINK_AT_BYTES = 64 * 1024                    # larger checkpoint files reach the engine as links
OFFLOADS_OFF = "tx off rx off sg off tso off gso off gro off"
RUNC_ROOTS = [Path("/run/docker/runtime-runc/moby"), Path("/run/containerd/runc/moby")]
# CFS period of the servers' CPU limits: short, so that a throttled task is slowed evenly
# (a 100 ms period lets a 60 ms task run unthrottled when it starts on a fresh quota)
CPU_PERIOD_US = 10_000


def server_state_dir(server: str) -> Path:
    """A server's checkpoints, layers and inbox: ``<state>/servers/<prefix><server>``."""
    return STATE_ROOT / "servers" / (name_prefix() + server)


def network_filters(*labels: str) -> dict:
    """Docker filters for this network's containers that carry every ``labels`` (``key=value``)."""
    return {"label": [f"{NETWORK_LABEL}={current_network()}", *labels]}


class ContainerError(RuntimeError):
    pass


def _run(args: list[str], check: bool = True) -> str:
    result = subprocess.run(args, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise ContainerError(f"`{' '.join(args)}` failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


@dataclass
class Limits:
    """Resource quota of one service container (seed 004's application profile)."""

    cpus: float = 1.0
    memory_mb: int = 2048


@dataclass
class Instance:
    """One running container of a service on one server."""

    service: str
    app: str
    server: str
    container_id: str
    name: str
    ip: str
    port: int
    pid: int

    def endpoint(self) -> tuple[str, int]:
        return self.ip, self.port

    def record(self) -> dict:
        return asdict(self)


class ServerContainers:
    """The containers of one emulated server: create, wire, checkpoint, restore."""

    def __init__(self, server: str, subnet: str, client: docker.DockerClient | None = None,
                 congestion_control: str = "cubic", inside: bool = False, speed: float = 1.0,
                 cgroup_parent: str | None = None, max_cores: float | None = None, per_thread_quota: bool = True):
        """``inside``: this process already runs in the server's namespace (an agent).
        Mininet nodes have their own mount namespace, in which /run/netns is stale,
        so from inside, commands run directly rather than through ``ip -n``.
        ``speed``: the server's compute relative to the fastest (a container's CPU limit
        is scaled by it); ``cgroup_parent``: the server's cgroup (``ServerCgroup.parent``),
        ``max_cores``: its host cores (no container may ask for more); ``per_thread_quota``:
        below speed 1, every thread of a service its own quota too (``thread_quota``)."""
        self.server = server
        self.speed = speed
        self.per_thread_quota = per_thread_quota and speed < 1.0
        self._thread_quotas: dict[str, ThreadQuota] = {}
        self._gathered: set[str] = set()     # containers being checkpointed: their threads stay together
        self._quota_lock = threading.Lock()
        self.cgroup_parent = cgroup_parent
        self.max_cores = max_cores
        self.netns = netns_name(server)
        self._in_server = [] if inside else ["ip", "netns", "exec", self.netns]
        self.subnet = ipaddress.IPv4Network(subnet)
        self.gateway = str(next(self.subnet.hosts()))
        self.client = client or docker.from_env(timeout=120)
        self.congestion_control = congestion_control
        self._lock = threading.Lock()
        self._upper_dirs: dict[str, Path] = {}
        self._lazy_daemons: dict[str, LazyPagesDaemon] = {}     # container -> its post-copy's daemon
        self.state_dir = server_state_dir(server)
        self.state_dir.mkdir(parents=True, exist_ok=True)

    # -- addresses ------------------------------------------------------------
    def _containers(self) -> list:
        return self.client.containers.list(all=True, filters=network_filters(f"{SERVER_LABEL}={self.server}"))

    def _free_ip(self) -> str:
        used = {c.labels.get(IP_LABEL) for c in self._containers()}
        for address in list(self.subnet.hosts())[1:]:
            if str(address) not in used:
                return str(address)
        raise ContainerError(f"{self.server}: no free address in {self.subnet}")

    # -- lifecycle ----------------------------------------------------------
    def reserve(self, service: str, app: str, image: str, port: int, limits: Limits,
                env: dict | None = None, lazy: bool = False):
        """Create (not start) a container of ``service`` here; its address is fixed now.
        ``lazy``: under the post-copy runtime (``criu.LAZY_RUNTIME``), to be restored lazily."""
        with self._lock:
            return self._create(service, app, image, port, limits, env, lazy)

    def _create(self, service, app, image, port, limits, env, lazy=False):
        ip = self._free_ip()
        tag = uuid.uuid4().hex[:6]
        prefix, network = name_prefix(), str(current_network())
        holder = self.client.containers.run(
            image, entrypoint=["sleep", "infinity"], name=f"{prefix}net-{service}-{self.server}-{tag}", detach=True,
            network_mode="none", network_disabled=True, mem_limit="32m", cgroup_parent=self.cgroup_parent,
            labels={TESTBED_LABEL: "1", NETWORK_LABEL: network, SERVER_LABEL: self.server, NETNS_FOR_LABEL: service,
                    IP_LABEL: ip})
        cores = limits.cpus * self.speed          # the container's share of a host core at this server's speed
        if self.max_cores is not None:
            cores = min(cores, self.max_cores)
        # a slower clock per thread: as many threads as cores asked for, each slower; else as
        # many as host cores granted
        threads = math.ceil((cores / self.speed if self.per_thread_quota else cores) - 1e-9)
        try:
            self._wire(holder, ip)
            return self.client.containers.create(
                image, name=f"{prefix}{service}-{self.server}-{tag}", detach=True,
                network_mode=f"container:{holder.id}",
                labels={TESTBED_LABEL: "1", NETWORK_LABEL: network, SERVER_LABEL: self.server, SERVICE_LABEL: service,
                        APP_LABEL: app, IP_LABEL: ip, HOLDER_LABEL: holder.id},
                # numerical libraries size their thread pools by this: as many threads as the
                # container has cores, not the host's (extra threads only spin against the quota)
                environment={"MEC_PORT": str(port), "OMP_NUM_THREADS": str(max(1, threads)),
                             **(env or {})},
                cpu_period=CPU_PERIOD_US, cpu_quota=max(1000, int(cores * CPU_PERIOD_US)),
                mem_limit=f"{limits.memory_mb}m", cgroup_parent=self.cgroup_parent,
                runtime=LAZY_RUNTIME if lazy else None,
            )
        except Exception:
            holder.remove(force=True)
            raise

    def start(self, container, port: int, ready_timeout: float = 300.0) -> Instance:
        """Start a reserved container from its image (a fresh service, no state) and
        return once it accepts connections (model services load for seconds)."""
        container.start()
        instance = self.instance(container, port)
        deadline = time.monotonic() + ready_timeout
        while not self._accepts(instance.ip, port):
            container.reload()
            if container.status != "running":
                raise ContainerError(f"{container.name} exited while starting: "
                                     f"{container.logs(tail=20).decode(errors='replace')}")
            if time.monotonic() > deadline:
                raise ContainerError(f"{container.name} did not accept connections in {ready_timeout} s")
            time.sleep(0.05)
        self.spread_threads(container.id)
        return instance

    def _accepts(self, ip: str, port: int) -> bool:
        """Whether the service accepts a connection, tried from the server's namespace: the
        container's address means nothing outside its network (and must not leave the host)."""
        if not self._in_server:
            try:
                socket.create_connection((ip, port), timeout=1).close()
                return True
            except OSError:
                return False
        probe = subprocess.run(self._in_server + ["timeout", "1", "bash", "-c", f"</dev/tcp/{ip}/{port}"],
                               capture_output=True)
        return probe.returncode == 0

    def instance(self, container, port: int) -> Instance:
        """The running service container as an ``Instance``."""
        container.reload()
        self._upper_dirs[container.id] = Path(container.attrs["GraphDriver"]["Data"]["UpperDir"])
        pid = container.attrs["State"]["Pid"]
        if not pid:
            raise ContainerError(f"{container.name} is not running: {container.attrs['State']}")
        return Instance(service=container.labels[SERVICE_LABEL], app=container.labels[APP_LABEL],
                        server=self.server, container_id=container.id, name=container.name,
                        ip=container.labels[IP_LABEL], port=port, pid=pid)

    def _wire(self, holder, ip: str) -> None:
        """Plug a running holder's namespace into this server's bridge with address ``ip``."""
        holder.reload()
        pid = holder.attrs["State"]["Pid"]
        if not pid:
            raise ContainerError(f"{holder.name} is not running: {holder.attrs['State']}")
        mac = "02:00:" + ":".join(f"{int(octet):02x}" for octet in ip.split("."))   # one per address
        outer, inner = f"c{holder.id[:10]}", f"p{holder.id[:10]}"
        # The neighbour entry announces the (possibly reused) address at once, as a
        # gratuitous ARP would: an entry left FAILED by clients probing the address
        # earlier would otherwise hold their packets until the next ARP retry.
        _run(self._in_server + ["sh", "-c",
                              f"ip link add {outer} type veth peer name {inner} address {mac} netns {pid} && "
                              f"ethtool -K {outer} {OFFLOADS_OFF} && "
                              f"ip link set {outer} master {CONTAINER_BRIDGE} up && "
                              f"ip neigh replace {ip} lladdr {mac} dev {CONTAINER_BRIDGE} nud reachable"])
        _run(["nsenter", f"--net=/proc/{pid}/ns/net", "sh", "-c",
              f"ip link set {inner} name eth0 && ethtool -K eth0 {OFFLOADS_OFF} && "
              f"ip addr add {ip}/{self.subnet.prefixlen} dev eth0 && ip link set eth0 up && "
              f"ip link set lo up && ip route replace default via {self.gateway} && "
              f"sysctl -q -w net.ipv4.tcp_congestion_control={self.congestion_control} "
              f"net.ipv6.conf.all.disable_ipv6=1"])

    def remove(self, container_id: str) -> None:
        """Remove a service container and its holder, unplugging the holder first: a
        namespace can outlive its last process (orphaned TCP sockets hold it), and
        with its address and MAC still on the bridge it would answer for the next
        container given that address."""
        self._upper_dirs.pop(container_id, None)
        with self._quota_lock:
            self._thread_quotas.pop(container_id, None)
            self._gathered.discard(container_id)
        daemon = self._lazy_daemons.pop(container_id, None)
        if daemon is not None:
            daemon.stop()
        holder = remove_container(self.client, container_id, remove_holder=False)
        if holder:
            _run(self._in_server + ["ip", "link", "delete", f"c{holder[:10]}"], check=False)
            remove_container(self.client, holder)

    def stop(self, container_id: str) -> None:
        """Kill a service container (its state is not needed any more)."""
        try:
            self.client.containers.get(container_id).kill()
        except docker.errors.APIError:
            pass

    def is_running(self, container_id: str) -> bool:
        try:
            return self.client.containers.get(container_id).status == "running"
        except docker.errors.NotFound:
            return False

    # -- checkpoint / restore --------------------------------------------------
    def docker_root(self) -> Path:
        if not hasattr(self, "_docker_root"):
            self._docker_root = Path(self.client.info()["DockerRootDir"])
        return self._docker_root

    def freezer(self, container_id: str) -> Freezer | None:
        try:
            return Freezer(container_cgroups(container_id))
        except (CgroupError, OSError):
            return None

    def meter(self, container_id: str) -> CgroupMeter:
        return CgroupMeter(container_cgroups(container_id))

    def freeze_when_idle(self, instance: Instance, timeout: float) -> tuple[Freezer | None, bool]:
        """Freeze the container as soon as none of its threads is working (at most
        ``timeout`` s from now, then regardless), so that a checkpoint catches it
        between requests.  Returns the freezer (None if this host has none; CRIU
        then freezes by itself; so does ``timeout`` 0) and whether an idle moment came."""
        freezer = self.freezer(instance.container_id) if timeout > 0 else None
        if freezer is None:
            return None, False
        idle = freezer.wait_idle(timeout)
        freezer.freeze()
        return freezer, idle

    def checkpoint(self, instance: Instance, target: Path, leave_running: bool,
                   frozen: Freezer | None = None, steps: Stopwatch | None = None) -> Path:
        """Checkpoint the container's processes into ``target`` (a fresh directory).

        Docker's own runc is called directly on Docker's container: the images are
        the same as ``docker checkpoint create`` makes, minus containerd's copy of
        them into its content store and back, which the service would otherwise
        wait out while stopped.  Falls back to the Docker API.  ``frozen``: the
        container's freezer, frozen beforehand (see ``freeze_when_idle``); it is
        thawed afterwards, whatever happened."""
        steps = steps or Stopwatch()
        ended = False
        try:
            self._gather_threads(instance.container_id, steps)
            images = self._checkpoint(instance, target, leave_running, steps)
            ended = not leave_running
            return images
        finally:
            if frozen is not None:
                frozen.thaw()
            if not ended:               # it runs on (a pre-copy, or a checkpoint that failed)
                self._spread_again(instance.container_id)

    def _checkpoint(self, instance: Instance, target: Path, leave_running: bool, steps: Stopwatch) -> Path:
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        addresses = self._addresses(instance)  # before: a final checkpoint ends the process
        root = runc_root(instance.container_id)
        steps.lap("addresses")
        if root is not None:
            work = target.with_name(target.name + ".work")
            args = _runc_checkpoint(root) + ["--image-path", str(target), "--work-path", str(work)]
            if leave_running:
                args.append("--leave-running")
            result = subprocess.run(args + [instance.container_id], capture_output=True, text=True)
            steps.lap("runc_checkpoint")
            log = (work / "dump.log").read_text()[-1500:] if (work / "dump.log").exists() else ""
            shutil.rmtree(work, ignore_errors=True)
            if result.returncode != 0:
                raise ContainerError(f"checkpoint of {instance.name} failed: {result.stderr.strip()} {log}")
            (target / ADDRESSES_FILE).write_text(addresses)
            return target
        api = self.client.api
        response = api.post(api._url("/containers/{0}/checkpoints", instance.container_id),
                            json={"CheckpointID": target.name, "CheckpointDir": str(target.parent),
                                  "Exit": not leave_running})
        if response.status_code >= 300:
            raise ContainerError(f"checkpoint of {instance.name} failed: {_docker_message(response)}")
        (target / ADDRESSES_FILE).write_text(addresses)
        return target

    def checkpoint_lazy(self, instance: Instance, target: Path, page_server: tuple[str, int],
                        frozen: Freezer | None = None, base: Path | None = None) -> LazyCheckpoint:
        """Post-copy: checkpoint the container's processes into ``target`` without their
        memory, which CRIU's page server at ``page_server`` (an address of this server)
        then serves; see ``testbed.containers.lazy``.  ``frozen``: as for ``checkpoint``.
        ``base``: a checkpoint the destination holds; only pages changed since then cross."""
        try:
            self._gather_threads(instance.container_id)
            shutil.rmtree(target, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            addresses = self._addresses(instance)
            root = runc_root(instance.container_id)
            if root is None:
                raise ContainerError(f"post-copy of {instance.name}: no runc state (Docker's runc is needed)")
            try:
                lazy = LazyCheckpoint.start(_runc_checkpoint(root), instance.container_id, target, page_server,
                                            base)
            except LazyError as error:
                raise ContainerError(f"post-copy of {instance.name}: {error}") from None
            (target / ADDRESSES_FILE).write_text(addresses)
            return lazy
        except Exception:
            self._spread_again(instance.container_id)           # it runs on
            raise
        finally:
            if frozen is not None:
                frozen.thaw()           # CRIU holds the processes by now

    @staticmethod
    def _addresses(instance: Instance) -> str:
        """Every address the service holds (its own, and old ones a restore left on lo,
        to which sockets may still be bound), for CRIU's action script."""
        out = _run(["nsenter", f"--net=/proc/{instance.pid}/ns/net", "ip", "-4", "-o", "addr", "show",
                    "scope", "global"], check=False)
        addresses = {line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3}
        addresses.add(instance.ip)
        return "\n".join(sorted(addresses)) + "\n"

    def restore(self, container, images_dir: Path, port: int, steps: Stopwatch | None = None,
                lazy_from: tuple[str, int] | None = None, prepaging_window: int = 0,
                lazy_base: Path | None = None, lazy_upstream: socket.socket | None = None) -> Instance:
        """Start a reserved container from the CRIU images in ``images_dir`` (consumed:
        deleted once the restore has read them).

        ``docker start --checkpoint`` tars the checkpoint into containerd's content store,
        which unpacks it again for runc: two copies of every byte while the service is
        down (1.7-3.1 s for a model service's 65-137 MB).  The engine is given a checkpoint
        whose large files are symbolic links to the images where they are (its archive
        keeps links as links and CRIU follows them), so a few hundred kB are copied.
        Should an engine refuse that, the images are handed over whole;
        ``steps.notes["restore_path"]`` says which path was taken (``linked`` or
        ``copied``).  ``lazy_from``: post-copy, the source's page server (address, port),
        which a lazy-pages daemon started here reaches (the container must have been
        reserved ``lazy``), through a pre-paging relay if ``prepaging_window`` (bytes) is
        above 0 (``testbed.containers.prepaging``); ``lazy_base``: the pre-copied checkpoint
        that pages unchanged since are taken from (post-copy after a pre-copy);
        ``lazy_upstream``: the relay's connection to the page server, opened already (taken)."""
        steps = steps or Stopwatch()
        checkpoints = self.docker_root() / "containers" / container.id / "checkpoints"
        if lazy_from is not None:
            try:
                daemon = LazyPagesDaemon.start(images_dir, lazy_from, self.state_dir / "lazy" / container.id,
                                               prepaging_window, lazy_base, lazy_upstream)
            except LazyError as error:
                raise ContainerError(f"restore of {container.name} on {self.server}: {error}") from None
            self._lazy_daemons[container.id] = daemon
            (images_dir / LAZY_MARKER).write_text(f"{daemon.socket}\n")
            steps.lap("lazy_pages_daemon")
        handed: set[str] = set()       # the checkpoints given to the engine, whose copies it leaves
        try:
            try:
                with_links = _engine_checkpoint(images_dir, checkpoints, linked=True)
                handed.add(with_links)
                self._start_from(container, with_links)
                steps.notes["restore_path"] = "linked"
            except ContainerError as linked_error:
                if self.is_running(container.id) or lazy_from is not None:    # a page server serves once
                    raise
                steps.lap("docker_restore_linked_failed")
                try:
                    copied = _engine_checkpoint(images_dir, checkpoints, linked=False)
                    handed.add(copied)
                    self._start_from(container, copied)
                except ContainerError as error:
                    raise ContainerError(f"{error} (with links to the images: {linked_error})") from error
                steps.notes["restore_path"] = "copied"
            steps.lap("docker_restore")
            if lazy_from is not None:
                daemon.restored()
        except Exception:
            if lazy_from is not None:       # tell the source's page server now: its processes run on
                self._lazy_daemons.pop(container.id).stop()
            raise
        finally:
            shutil.rmtree(images_dir, ignore_errors=True)
            for copy in engine_restore_copies(handed):     # restored (or failed): done with
                shutil.rmtree(copy, ignore_errors=True)
            steps.lap("engine_copy_removed")
        instance = self.instance(container, port)
        steps.lap("inspect")
        self.spread_threads(container.id)
        steps.lap("thread_quota")
        return instance

    # -- a slower clock per thread (testbed.containers.thread_quota) --------------------
    def spread_threads(self, container_id: str) -> dict:
        """Every thread of the container its own quota at this server's speed (threads
        created since get theirs now).  Says how many threads have their own quota and how
        many share the container's, or why none has (speed 1, the setting off, cgroup v2)."""
        with self._quota_lock:
            if not self.per_thread_quota:
                return {"applied": False, "reason": "speed 1" if self.speed >= 1.0 else "per_thread_quota off"}
            quota = self._thread_quotas.get(container_id)
            if quota is None:
                try:
                    quota = self._thread_quotas[container_id] = ThreadQuota(container_cgroups(container_id),
                                                                             self.speed, CPU_PERIOD_US)
                except (CgroupError, OSError) as error:
                    return {"applied": False, "reason": f"no cgroup: {error}"}
            if not quota.supported:
                return {"applied": False, "reason": quota.reason}
            if container_id in self._gathered:
                return {"applied": False, "reason": "being checkpointed"}
            try:
                quota.spread()
                return {"applied": True, **quota.threads()}
            except (CgroupError, OSError) as error:     # the container ended meanwhile
                return {"applied": False, "reason": str(error)}

    def _gather_threads(self, container_id: str, steps: Stopwatch | None = None) -> None:
        """Before a checkpoint: the threads back in the container's cgroup, so that CRIU's
        images name that one only (and a restore at another speed spreads afresh)."""
        with self._quota_lock:
            quota = self._thread_quotas.get(container_id)
            self._gathered.add(container_id)
            if quota is not None and quota.supported:
                quota.gather()
        if steps is not None:
            steps.lap("threads_gathered")

    def _spread_again(self, container_id: str) -> None:
        """After a checkpoint the container outlives: its threads get their quotas back."""
        with self._quota_lock:
            self._gathered.discard(container_id)
        self.spread_threads(container_id)

    def _start_from(self, container, checkpoint: str) -> None:
        api = self.client.api
        response = api.post(api._url("/containers/{0}/start", container.id), params={"checkpoint": checkpoint})
        if response.status_code >= 300:
            raise ContainerError(f"restore of {container.name} on {self.server} failed: "
                                 f"{_docker_message(response)}")

    # -- the container's own files (its writable layer) --------------------------
    def upper_dir(self, container_id: str) -> Path:
        """The overlay upper dir, fixed for the container's life.  Remembered: right
        after a final checkpoint the engine answers an inspect only once it has
        processed the exit (80 ms of downtime)."""
        if container_id not in self._upper_dirs:
            data = self.client.api.inspect_container(container_id)["GraphDriver"]["Data"]
            self._upper_dirs[container_id] = Path(data["UpperDir"])
        return self._upper_dirs[container_id]

    def export_rw_layer(self, container_id: str, tar_path: Path) -> int:
        """Archive what the container wrote to its root filesystem (overlay upper dir)."""
        tar_path.parent.mkdir(parents=True, exist_ok=True)
        _run(["tar", "--xattrs", "-C", str(self.upper_dir(container_id)), "-cf", str(tar_path), "."])
        return tar_path.stat().st_size

    def import_rw_layer(self, container, tar_path: Path) -> None:
        _run(["tar", "--xattrs", "-C", str(self.upper_dir(container.id)), "-xf", str(tar_path)])


def remove_container(client: docker.DockerClient, container_id: str, remove_holder: bool = True) -> str | None:
    """Remove a container and (unless told not to) its holder; return the holder's id."""
    try:
        container = client.containers.get(container_id)
    except docker.errors.NotFound:
        return None
    holder = container.labels.get(HOLDER_LABEL)
    container.remove(force=True)
    if holder and remove_holder:
        remove_container(client, holder)
    return holder


def _runc_checkpoint(root: Path) -> list[str]:
    """Docker's runc checkpointing, up to its options.  In the Docker engine's mount namespace:
    Mininet nodes (where agents run) have their own, without the cgroup mounts runc and CRIU need."""
    return ["nsenter", f"--mount=/proc/{engine_pid()}/ns/mnt", "runc", "--root", str(root), "checkpoint"]


def runc_root(container_id: str) -> Path | None:
    """Where Docker's runc keeps this container's state (None if not found)."""
    for root in RUNC_ROOTS:
        if (root / container_id / "state.json").exists():
            return root
    return None


def container_cgroups(container_id: str) -> ContainerCgroups:
    """A running container's cgroups, seen from any mount namespace."""
    root = runc_root(container_id)
    if root is None:
        raise CgroupError(f"no runc state for container {container_id[:12]}")
    return ContainerCgroups(root / container_id / "state.json", Path(f"/proc/{engine_pid()}/root"))


def engine_pid() -> int:
    """Process id of the Docker engine (dockerd)."""
    try:
        pid = int(Path("/var/run/docker.pid").read_text().strip())
        if Path(f"/proc/{pid}").exists():
            return pid
    except (OSError, ValueError):
        pass
    found = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()
    if not found:
        raise ContainerError("cannot find the Docker engine's process (dockerd)")
    return int(found[0])


def _docker_message(response) -> str:
    try:
        return response.json().get("message", response.text)
    except ValueError:
        return response.text


def _engine_checkpoint(images: Path, checkpoints: Path, linked: bool) -> str:
    """A checkpoint directory in ``checkpoints`` for the engine to restore from: hard
    links to (or copies of) ``images``' files, or with ``linked`` symbolic links to its
    large ones; returns its name.  The symbolic links
    are relative and climb to ``/`` first: CRIU opens them from containerd's unpacked
    copy of the checkpoint (under ``/tmp``) once it has entered the container's mount
    namespace, where an absolute link would be looked up inside the container's root."""
    name = _new_checkpoint(checkpoints)

    def place(source, target):
        if linked and os.path.getsize(source) >= LINK_AT_BYTES:
            os.symlink("../" * 32 + os.path.realpath(source).lstrip("/"), target)
        else:
            _link_or_copy(source, target)

    shutil.copytree(images, checkpoints / name, dirs_exist_ok=True, copy_function=place)
    return name


def _link_or_copy(source, target) -> None:
    """A hard link where both are on one mount (the engine's archive copies the bytes anyway)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


NONCE_FILE = "mec-testbed-restore.nonce"


def _new_checkpoint(checkpoints: Path) -> str:
    """A fresh checkpoint directory.  Docker 20.10 uploads a checkpoint to containerd's
    content store, where the identical upload of a recent one may linger until GC
    ("content ... already exists", moby#42900): a nonce file, holding the name, makes
    each unique and finds containerd's copy of it again (``engine_restore_copies``)."""
    name = f"restore-{uuid.uuid4().hex}"
    (checkpoints / name).mkdir(parents=True)
    (checkpoints / name / NONCE_FILE).write_text(name)
    return name


def engine_restore_copies(names: set[str] | None = None) -> list[Path]:
    """containerd's unpacked copies (``/tmp/ctrd-checkpoint*`` as the engine sees its
    ``/tmp``) of checkpoints the testbed restored from, which containerd never removes
    (containerd#10166): a few hundred kB per migration.  ``names``: only those checkpoints'
    (another network's restore may be reading its copy); None: every one of the testbed's."""
    try:
        tmp = Path(f"/proc/{engine_pid()}/root/tmp")
    except ContainerError:
        return []
    found = []
    for copy in tmp.glob("ctrd-checkpoint*"):
        try:
            nonce = (copy / NONCE_FILE).read_text()
        except OSError:                  # not a checkpoint of ours (or gone meanwhile)
            continue
        if names is None or nonce in names:
            found.append(copy)
    return found
