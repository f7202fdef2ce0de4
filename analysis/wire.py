"""Downtime on the wire: the captures of a trial read with scapy, against the client's log.

The mobile user's capture (``testbed.net.capture``) holds every request and
reply of the service protocol as they crossed its radio interfaces.  Each TCP
connection gives the *attempts* the wire saw: a request (client to service,
data) is answered if a reply follows on the same connection, and a connection
that never carried a request is a failed connection attempt.  The same outage
rule as the client's (``testbed.records.outages``) then gives the downtime on
the wire, which is compared outage by outage with the client's.  They differ
where the client counts from something the wire cannot see: the radio going
down under a request already sent (the client's outage starts then, the wire's
at the request).  Replies also say which interface, so which base station,
carried the user's traffic after every handover.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from testbed import ports
from testbed.records import outages, read_jsonl

AGREE_S = 0.020


def read_capture(pcap: Path) -> pd.DataFrame:
    """One row per packet: time, interface, addresses, ports, flags, payload length."""
    from scapy.layers.inet import IP, TCP
    from scapy.utils import PcapReader

    interfaces = {}
    names = pcap.with_suffix(".json")
    if names.exists():
        interfaces = {int(k): v for k, v in json.loads(names.read_text()).items()}
    rows = []
    with PcapReader(str(pcap)) as packets:
        for packet in packets:
            if IP not in packet or TCP not in packet:
                continue
            ip, tcp = packet[IP], packet[TCP]
            index = getattr(packet, "ifindex", None)
            rows.append({"t": float(packet.time), "interface": interfaces.get(index, str(index)), "src": ip.src,
                         "sport": int(tcp.sport), "dst": ip.dst, "dport": int(tcp.dport), "flags": str(tcp.flags),
                         "payload": len(tcp.payload)})
    return pd.DataFrame(rows)


def attempts(packets: pd.DataFrame, service_port: int = ports.SERVICE) -> pd.DataFrame:
    """What the wire saw of each task attempt: endpoint, sent, received, ok, interface of the reply."""
    if packets.empty:
        return pd.DataFrame(columns=["endpoint", "sent", "received", "ok", "interface", "error"])
    rows = []
    outbound = packets["dport"] == service_port
    packets = packets.assign(client=packets["sport"].where(outbound, packets["dport"]),
                             server=packets["dst"].where(outbound, packets["src"]))
    for (client, server), flow in packets.sort_values("t").groupby(["client", "server"], sort=False):
        request, any_request, last = None, False, float(flow["t"].max())
        syn = flow[(flow["dport"] == service_port) & flow["flags"].str.contains("S")]
        for row in flow.itertuples(index=False):
            to_service = row.dport == service_port
            if to_service and row.payload > 0:
                if request is None:
                    request = row.t            # the first segment of a request marks it
                any_request = True
            elif not to_service and row.payload > 0 and request is not None:
                rows.append({"endpoint": f"{server}:{service_port}", "sent": request, "received": row.t, "ok": True,
                             "interface": row.interface, "error": None})
                request = None
        if request is not None:               # a request that was never answered on its connection
            rows.append({"endpoint": f"{server}:{service_port}", "sent": request, "received": last, "ok": False,
                         "interface": None, "error": "no reply on the wire"})
        if not any_request and len(syn):       # a connection attempt that carried nothing
            rows.append({"endpoint": f"{server}:{service_port}", "sent": float(syn["t"].min()), "received": last,
                         "ok": False, "interface": None, "error": "connection without a request"})
    return pd.DataFrame(rows).sort_values("sent", kind="stable").reset_index(drop=True)


def compare_trial(trial_dir: Path, user: str) -> list[dict]:
    """Per service of ``user``: each of the client's outages next to the wire's."""
    pcap = trial_dir / f"capture-{user}.pcap"
    log = trial_dir / f"requests-{user}.jsonl"
    if not pcap.exists() or not log.exists():
        return []
    client = pd.DataFrame(read_jsonl(log))
    seen = attempts(read_capture(pcap))
    result = []
    for service, rows in client.groupby("service"):
        endpoints = {f"{json.loads(e)[0] if isinstance(e, str) else e[0]}:{ports.SERVICE}"
                     for e in rows["endpoint"].dropna()}
        wire = seen[seen["endpoint"].isin(endpoints)]
        mine = outages(rows.to_dict("records"))
        theirs = outages(wire.to_dict("records")) if not wire.empty else []
        radio_down = [r["received"] for r in rows.to_dict("records")
                      if not r["ok"] and str(r.get("error", "")).startswith("interrupted")]
        for outage in mine:
            match = min(theirs, key=lambda o: abs(o.start - outage.start) + abs(o.end - outage.end), default=None)
            difference = None if match is None else (match.seconds - outage.seconds)
            reason = None
            if match is None:
                reason = "the wire saw no outage here"
            elif abs(difference) > AGREE_S and any(abs(t - outage.start) < 1e-6 for t in radio_down):
                reason = "the client counts from the radio going down, the wire from the request before"
            elif abs(difference) > AGREE_S:
                reason = "unexplained"
            result.append({"service": service, "client_start": outage.start, "client_s": outage.seconds,
                           "wire_start": None if match is None else match.start,
                           "wire_s": None if match is None else match.seconds,
                           "difference_s": difference, "agree": difference is not None and abs(difference) <= AGREE_S,
                           "reason": reason})
    return result


def path_after_handovers(trial_dir: Path, user: str, events: list[dict]) -> list[dict]:
    """After each handover of ``user``: the base station whose interface carried the first reply."""
    pcap, config = trial_dir / f"capture-{user}.pcap", trial_dir / f"mu-{user}.json"
    if not pcap.exists() or not config.exists():
        return []
    interface_ap = {port["interface"]: ap for ap, port in json.loads(config.read_text())["radio_ports"].items()}
    seen = attempts(read_capture(pcap))
    answered = seen[seen["ok"]]
    result = []
    for event in events:
        if event.get("kind") != "handover.end" or event.get("user") != user:
            continue
        after = answered[answered["received"] > event["end"]]
        interface = after["interface"].iloc[0] if len(after) else None
        result.append({"user": user, "handover_end": event["end"], "to": event.get("to"),
                       "first_reply_via": interface_ap.get(interface, interface),
                       "as_expected": interface_ap.get(interface) == event.get("to")})
    return result
