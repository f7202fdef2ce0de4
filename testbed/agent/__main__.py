"""``python -m testbed.agent CONFIG.json``: run one server's agent until SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

import docker

from testbed import ports
from testbed.agent.agent import Agent, management_socket
from testbed.agent.config import AgentConfig
from testbed.migration.transfer import FileReceiver, rsyncd_config, start_rsyncd
from testbed.rpc import RpcServer


def main(argv=None) -> int:
    argv = argv if argv is not None else sys.argv[1:]
    config = AgentConfig.model_validate_json(Path(argv[0]).read_text())
    agent = Agent(config, docker_client=docker.from_env(timeout=300))
    rpc = RpcServer((config.address, ports.AGENT_RPC), agent, Agent.REMOTE, events=agent.events)
    management = RpcServer(management_socket(config.server), agent, Agent.REMOTE, events=agent.events)
    receiver = FileReceiver((config.address, ports.AGENT_DATA), agent.inbox,
                            on_arrival=agent.destination.on_arrival,
                            ahead_of_arrival=agent.destination.ahead_of_arrival)
    rsyncd = start_rsyncd(rsyncd_config(agent.state_dir / "rsyncd.conf", agent.layers.directory), config.address,
                          ports.AGENT_RSYNC)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    rpc.serve_in_thread()
    management.serve_in_thread()
    receiver.serve_in_thread()
    agent.events.emit("agent.ready", server=config.server, address=config.address)
    if config.controller:
        agent.monitor.report_every(config.monitor_period, config.controller, stop)
    stop.wait()
    agent.shutdown()
    rpc.shutdown()
    management.shutdown()
    receiver.shutdown()
    rsyncd.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
