"""Every port the testbed listens on, in one place.

Agents, the controller and services bind to addresses inside the emulated
network (a server's loopback ``10.255.0.<i>``, a container's ``172.16.<j>.<k>``),
never to the host's own interfaces; management sockets are Unix sockets.
"""

SERVICE = 7000          # every service container (the task protocol, testbed.protocol)
AGENT_RPC = 7100        # a server's agent: orders from the controller and peer agents
AGENT_DATA = 7101       # a server's agent: migration state pushed by a peer (testbed.migration.transfer)
AGENT_RSYNC = 8730      # a server's rsync daemon: application layers (seed 001)
CONTROLLER_RPC = 7200   # the central controller: reports of users and servers
