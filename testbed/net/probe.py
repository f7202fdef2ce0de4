"""Measurements on a running network: ping RTTs and iperf3 throughput.

Used by ``testbed net check``, the link tests and the link benchmark, so all
three measure the same way.
"""

from __future__ import annotations

import json
import sys
import time


def icmp_echo(node, address: str, count: int = 10, interval: float = 0.2, timeout: float = 3.0) -> dict:
    """ICMP echo from ``node`` with microsecond RTTs: {"sent", "received", "rtts_ms"}."""
    out = node.cmd(f"{sys.executable} -m testbed.net.pinger {address} --count {count} "
                   f"--interval {interval} --timeout {timeout}")
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise RuntimeError(f"{node.name}: pinger failed: {out.strip()[-300:]}") from exc


def ping_rtt(node, address: str, count: int = 10, interval: float = 0.2) -> list[float]:
    """RTTs in ms of ``count`` pings from ``node`` (after one warm-up ping for ARP)."""
    icmp_echo(node, address, count=1, timeout=5)
    result = icmp_echo(node, address, count=count, interval=interval)
    if not result["rtts_ms"]:
        raise RuntimeError(f"{node.name}: no reply from {address}")
    return result["rtts_ms"]


def iperf3_mbps(client, server, address: str, seconds: float = 10, omit: float = 2,
                window: str | None = None, port: int = 5201) -> dict:
    """TCP throughput client -> server in Mbit/s (receiver side, after ``omit`` seconds)."""
    proc = server.popen(["iperf3", "-s", "-1", "-p", str(port), "-B", address])
    try:
        deadline = time.monotonic() + 5
        while f":{port}" not in server.cmd(f"ss -ltn sport = :{port}"):
            if time.monotonic() > deadline:
                raise RuntimeError("iperf3 server did not start")
            time.sleep(0.05)
        args = f"iperf3 -J -c {address} -p {port} -t {seconds} -O {omit}"
        if window:
            args += f" -w {window}"
        out = client.cmd(args)
        try:
            report = json.loads(out[out.index("{"):])
        except ValueError as exc:
            raise RuntimeError(f"iperf3 failed: {out.strip()[-500:]}") from exc
        if "error" in report:
            raise RuntimeError(f"iperf3: {report['error']}")
        end = report["end"]
        return {
            "received_mbps": end["sum_received"]["bits_per_second"] / 1e6,
            "sent_mbps": end["sum_sent"]["bits_per_second"] / 1e6,
            "retransmits": end["sum_sent"].get("retransmits", 0),
            "seconds": end["sum_received"]["seconds"],
        }
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def iperf3_together(server, address: str, clients: dict, seconds: float = 4.0, omit: float = 1.0,
                    reverse: bool = False) -> dict:
    """TCP throughput in Mbit/s of several clients at once, each to its own iperf3 server on
    ``server`` (``clients``: node -> port); ``reverse``: from the server to the clients."""
    servers = [server.popen(["iperf3", "-s", "-1", "-p", str(port), "-B", address]) for port in clients.values()]
    try:
        deadline = time.monotonic() + 5
        for port in clients.values():
            while f":{port}" not in server.cmd(f"ss -ltn sport = :{port}"):
                if time.monotonic() > deadline:
                    raise RuntimeError("iperf3 server did not start")
                time.sleep(0.05)
        runs = {node: node.popen(["iperf3", "-J", "-c", address, "-p", str(port), "-t", str(seconds),
                                  "-O", str(omit), *(["-R"] if reverse else [])])
                for node, port in clients.items()}
        result = {}
        for node, run in runs.items():
            out, _ = run.communicate(timeout=seconds + omit + 30)
            report = json.loads(out)
            if "error" in report:
                raise RuntimeError(f"iperf3 on {node.name}: {report['error']}")
            result[node.name] = report["end"]["sum_received"]["bits_per_second"] / 1e6
        return result
    finally:
        for process in servers:
            if process.poll() is None:
                process.kill()
            process.wait()
