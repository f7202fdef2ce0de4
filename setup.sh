#!/usr/bin/env bash
# Set up everything the testbed needs on a Debian 12 / Ubuntu machine, as root.
# Idempotent: every step checks first, so a second run with nothing missing
# takes seconds.  Steps: apt packages (Mininet, Docker engine, iperf3, rsync,
# CRIU build deps) -> sysctls -> Docker engine with experimental features ->
# a CRIU that can checkpoint a TCP server on this kernel (built from Debian's
# source archive when the packaged one cannot) -> Python venv -> images.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$ROOT/.venv"
CACHE="${MEC_CACHE:-/var/cache/mec-testbed}"
CRIU_VERSION="4.2.1"
export DEBIAN_FRONTEND=noninteractive
START=$(date +%s)

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (namespaces, tc, Docker and CRIU need it)"
command -v apt-get >/dev/null || die "needs a Debian or Ubuntu machine (apt-get)"

# ---------------------------------------------------------------- packages
PACKAGES=(
  mininet iproute2 iputils-ping iperf3 ethtool rsync bridge-utils tcpdump iptables psmisc procps
  docker.io debootstrap debian-archive-keyring ca-certificates xz-utils curl
  python3 python3-venv python3-dev build-essential pkg-config dpkg-dev
  libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev protobuf-compiler python3-protobuf
  libnl-3-dev libnet1-dev libcap-dev libbsd-dev libnftables-dev libgnutls28-dev libaio-dev
  uuid-dev libdrm-dev
  chromium chromium-driver          # the dashboard's tests drive a real headless browser
)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${#missing[@]} packages: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---------------------------------------------------------------- sysctls
cat > /etc/sysctl.d/90-mec-testbed.conf <<'EOF'
# mec-testbed: TCP windows for 75 Mbit/s x 300 ms paths; bridged traffic not filtered;
# pipes of 16 MB for CRIU's post-copy page server (root without CAP_SYS_RESOURCE gets 1 MB).
net.core.rmem_max = 67108864
net.core.wmem_max = 67108864
fs.pipe-max-size = 16777216
EOF
sysctl -q -w net.core.rmem_max=67108864 net.core.wmem_max=67108864
sysctl -q -w fs.pipe-max-size=16777216 || say "cannot raise fs.pipe-max-size: the postcopy mode will fail here"
for key in net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables net.bridge.bridge-nf-call-arptables; do
  [ -e "/proc/sys/${key//.//}" ] && sysctl -q -w "$key=0" || true
done

# ---------------------------------------------------------------- docker
mkdir -p /etc/docker
daemon_json=/etc/docker/daemon.json
[ -s "$daemon_json" ] || echo '{}' > "$daemon_json"
changed=$(python3 - "$daemon_json" <<'EOF'
import json, sys
path = sys.argv[1]
config = json.load(open(path))
wanted = {"experimental": True,     # checkpoints
          "live-restore": True}     # containers outlive an engine restart (a fault a long run meets)
# post-copy: runc through the testbed's wrapper (testbed/containers/criu.py, LAZY_RUNTIME)
runtimes = {"mec-testbed-lazy": {"path": "/usr/local/lib/mec-testbed/runc-lazy"}}
if all(config.get(k) == v for k, v in wanted.items()) and \
        all(config.get("runtimes", {}).get(k) == v for k, v in runtimes.items()):
    print("no")
else:
    config.update(wanted)
    config["runtimes"] = {**config.get("runtimes", {}), **runtimes}
    json.dump(config, open(path, "w"), indent=2)
    print("yes")
EOF
)
start_dockerd() {
  if [ -d /run/systemd/system ]; then
    systemctl enable docker >/dev/null 2>&1 || true
    systemctl restart docker
  else
    if [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
      kill "$(cat /var/run/docker.pid)"; sleep 2
    fi
    nohup dockerd >/var/log/mec-testbed-dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return 0; sleep 0.5; done
  die "dockerd did not start (see /var/log/mec-testbed-dockerd.log)"
}
if [ "$changed" = yes ] || ! docker info >/dev/null 2>&1; then
  say "starting the Docker engine (experimental features on, for checkpoints; live restore)"
  start_dockerd
fi

# ---------------------------------------------------------------- python
if [ ! -x "$VENV/bin/python" ]; then
  say "creating the Python environment in .venv"
  /usr/bin/python3 -m venv "$VENV"
fi
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ln -sfn /usr/lib/python3/dist-packages/mininet "$site/mininet"
req_stamp="$VENV/.requirements.sha256"
req_hash=$(cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ ! -f "$req_stamp" ] || [ "$(cat "$req_stamp")" != "$req_hash" ]; then
  say "installing Python packages"
  "$VENV/bin/pip" install -q --upgrade pip "setuptools<81" wheel
  "$VENV/bin/pip" install -q -r "$ROOT/requirements.txt"
  "$VENV/bin/pip" install -q --no-deps -e "$ROOT"
  echo "$req_hash" > "$req_stamp"
fi

# ---------------------------------------------------------------- criu
# runc hands this file to CRIU: checkpoints never fail on a client's open
# connection, restored connections come back closed (the client reconnects).
"$VENV/bin/python" -c "from testbed.containers.criu import install_criu_config; install_criu_config()"
# CRIU probes the kernel for 50 ms on every dump and restore unless it may keep
# what it learnt in a tmpfs (gone at reboot, as it must be).  The CRIU built
# below keeps it in $KDAT_DIR; /run is not a tmpfs everywhere.
KDAT_DIR=/run/criu
mkdir -p "$KDAT_DIR"
mountpoint -q "$KDAT_DIR" || mount -t tmpfs -o size=1m,mode=0700 mec-testbed-criu "$KDAT_DIR"
if ! "$VENV/bin/python" -m testbed.doctor >/dev/null 2>&1; then
  if ! command -v criu >/dev/null && apt-cache show criu >/dev/null 2>&1; then
    apt-get install -y -qq --no-install-recommends criu >/dev/null 2>&1 || true
  fi
fi
ours_without_cache() { [ -x /usr/local/sbin/criu ] && ! grep -qa "$KDAT_DIR/criu.kdat" /usr/local/sbin/criu; }
if ! "$VENV/bin/python" -m testbed.doctor >/dev/null 2>&1 || ours_without_cache; then
  say "building CRIU $CRIU_VERSION from source (to checkpoint TCP servers on this kernel, with a kernel-probe cache)"
  src="$CACHE/criu-src"
  mkdir -p "$src"
  tarball=$(ls "$src"/criu_*.orig.tar.xz 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$tarball" ]; then
    cat > /etc/apt/sources.list.d/mec-testbed-sid-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt-get update -qq || true
    # The Debian patch tarball may be missing from the mirror; the upstream one suffices.
    (cd "$src" && { apt-get source -d -qq "criu=$CRIU_VERSION-1" || apt-get source -d -qq criu; } >/dev/null 2>&1 || true)
    tarball=$(ls "$src"/criu_*.orig.tar.xz 2>/dev/null | sort -V | tail -n1 || true)
    [ -n "$tarball" ] || die "could not fetch CRIU's source from Debian's source archive"
  fi
  CRIU_VERSION=$(basename "$tarball" | sed -E 's/criu_(.*)\.orig\.tar\.xz/\1/')
  rm -rf "$src/criu-$CRIU_VERSION"
  tar -C "$src" -xf "$tarball"
  make -C "$src/criu-$CRIU_VERSION" -j"$(nproc)" RUNDIR="$KDAT_DIR" criu >"$src/build.log" 2>&1 \
    || die "criu build failed (see $src/build.log)"
  install -m 0755 "$src/criu-$CRIU_VERSION/criu/criu" /usr/local/sbin/criu
  hash -r
  "$VENV/bin/python" -m testbed.doctor || die "criu $CRIU_VERSION still cannot checkpoint a TCP server here"
  # dockerd's runc must find the new criu first in its PATH.
  start_dockerd
fi

# ---------------------------------------------------------------- images and data
"$VENV/bin/testbed" images build

say "done in $(( $(date +%s) - START )) s; check the host with: .venv/bin/testbed doctor"
