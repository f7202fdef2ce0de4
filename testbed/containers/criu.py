"""How Docker's runc calls CRIU on a testbed host (written by setup.sh, checked by doctor)."""

from __future__ import annotations

from pathlib import Path

CRIU_CONFIG = Path("/etc/criu/runc.conf")
CRIU_ACTION_SCRIPT = Path("/usr/local/lib/mec-testbed/criu-action.sh")
CRIU_CONFIG_TEXT = f"""\
# Written by mec-testbed setup.sh: how runc (Docker's runtime) calls CRIU.
# tcp-close: a checkpoint never fails because a client holds a connection;
# on restore those connections are closed and the client reconnects.
# skip-in-flight: connections a client opened but the service has not accepted
# yet are dropped (the client retries) instead of failing the checkpoint.
# file-locks: model runtimes hold file locks; dump and restore them.
tcp-close
skip-in-flight
network-lock skip
file-locks
action-script {CRIU_ACTION_SCRIPT}
"""
# CRIU re-binds every socket of a restored service to its old address and
# re-connects connected UDP sockets (libraries keep such sockets), but a moved
# service has a new address.  The testbed writes the addresses the service held
# next to the images (ADDRESSES_FILE); this script puts those the namespace
# lacks on its lo, so those sockets come back, and gives a namespace without a
# default route a provisional one.  The old addresses stay on lo (sockets are
# bound to them) and travel on with the next checkpoint.
ADDRESSES_FILE = "mec-testbed-addresses"
CRIU_ACTION_TEXT = f"""\
#!/bin/sh
# Written by mec-testbed setup.sh: a CRIU action script (see /etc/criu/runc.conf).
[ "$CRTOOLS_SCRIPT_ACTION" = "setup-namespaces" ] || exit 0
[ -n "$CRTOOLS_INIT_PID" ] && [ -r "$CRTOOLS_IMAGE_DIR/{ADDRESSES_FILE}" ] || exit 0
exec nsenter --net=/proc/$CRTOOLS_INIT_PID/ns/net sh -c '
ip link set lo up || exit 1
present=$(ip -4 -o addr show | while read -r _ _ _ address _; do echo "${{address%/*}}"; done)
for address in $(cat "$1"); do
    echo "$present" | grep -qxF "$address" || ip addr add "$address/32" dev lo || exit 1
done
[ -n "$(ip route show default)" ] || ip route replace default dev lo
' action "$CRTOOLS_IMAGE_DIR/{ADDRESSES_FILE}"
"""


# Post-copy: Docker 20.10 cannot ask runc for a lazy restore, so a service container
# that may be restored lazily runs under LAZY_RUNTIME, Docker's name (daemon.json's
# "runtimes", written by setup.sh) for this wrapper of runc.  On a restore whose images
# hold LAZY_MARKER (the socket of the lazy-pages daemon the destination's agent started:
# testbed.containers.lazy) it links that socket into runc's work directory, where CRIU's
# restore looks for it, and adds --lazy-pages; every other call is runc's own.
LAZY_RUNTIME = "mec-testbed-lazy"
LAZY_RUNTIME_PATH = Path("/usr/local/lib/mec-testbed/runc-lazy")
LAZY_MARKER = "mec-testbed-lazy"
LAZY_RUNTIME_TEXT = f"""\
#!/bin/sh
# Written by mec-testbed setup.sh: runc, and a lazy (post-copy) restore when asked for.
runc=$(command -v runc || command -v /usr/sbin/runc) || {{ echo "runc not found" >&2; exit 1; }}
image=""; work=""; restore=""; previous=""
for arg in "$@"; do
    case "$previous" in --image-path) image=$arg ;; --work-path) work=$arg ;; esac
    [ "$arg" = restore ] && restore=1
    previous=$arg
done
if [ -n "$restore" ] && [ -n "$image" ] && [ -r "$image/{LAZY_MARKER}" ]; then
    read -r socket < "$image/{LAZY_MARKER}"
    work=${{work:-$image}}
    mkdir -p "$work" && ln -sfn "$socket" "$work/lazy-pages.socket" || exit 1
    first=1
    for arg in "$@"; do
        [ -n "$first" ] && set -- && first=""
        set -- "$@" "$arg"
        [ "$arg" = restore ] && set -- "$@" --lazy-pages
    done
fi
exec "$runc" "$@"
"""


def install_criu_config() -> bool:
    """Write CRIU's runc configuration, action script and the post-copy runtime wrapper;
    True if anything changed."""
    changed = False
    for path, text, mode in ((CRIU_ACTION_SCRIPT, CRIU_ACTION_TEXT, 0o755), (CRIU_CONFIG, CRIU_CONFIG_TEXT, 0o644),
                             (LAZY_RUNTIME_PATH, LAZY_RUNTIME_TEXT, 0o755)):
        if not path.exists() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(mode)
            changed = True
    return changed
