"""The agent of one server (seed 002, Fig. 1): Deployment-S, Resource Monitor, Migration.

It runs inside the server's namespace and listens on the server's address:
orders (RPC) on ``ports.AGENT_RPC``, migration state pushed by a peer on
``ports.AGENT_DATA``, and an rsync daemon for application layers on
``ports.AGENT_RSYNC``; the runner manages it through a Unix socket.  Source and
destination agents of a migration talk to each other directly, across the
emulated WAN.

Parts, one module each: ``deployment`` (the services here), ``monitor``
(resources), ``source`` and ``destination`` (the two sides of a migration),
``layers`` (seed 001's application layers); ``Agent`` (``agent``) offers an
explicit list of their calls to other processes and nothing else.

    python -m testbed.agent CONFIG.json        # an AgentConfig, written by Stack
"""

from testbed.agent.agent import Agent, management_socket
from testbed.agent.config import AgentConfig

__all__ = ["Agent", "AgentConfig", "management_socket"]
