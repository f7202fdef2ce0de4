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
at the request).  An attempt on a new connection counts from its SYN on both
sides, so the outages' ends agree.  Replies also say which interface, so which base station,
carried the user's traffic after every handover.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
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
    # a flow is one client address and port to one server: the user has an address per base
    # station, and the kernel may give the same port on two of them
    packets = packets.assign(address=packets["src"].where(outbound, packets["dst"]),
                             client=packets["sport"].where(outbound, packets["dport"]),
                             server=packets["dst"].where(outbound, packets["src"]))
    flows = packets.sort_values("t", kind="stable").groupby(["address", "client", "server"], sort=False)
    for (_, _, server), flow in flows:
        for connection in _connections(flow, service_port):
            rows += _connection_attempts(connection, server, service_port)
    return pd.DataFrame(rows).sort_values("sent", kind="stable").reset_index(drop=True)


def _connections(flow: pd.DataFrame, service_port: int) -> list[pd.DataFrame]:
    """A flow's packets split into connections: the kernel reuses a client port (at once for a
    connection refused, or minutes later), and a SYN after anything but its own retransmissions
    opens a new connection."""
    client_syn = (flow["dport"] == service_port) & flow["flags"].str.contains("S") & ~flow["flags"].str.contains("A")
    starts, seen_other = [], False
    for position, is_syn in enumerate(client_syn):
        if is_syn and seen_other:
            starts.append(position)
            seen_other = False
        elif not is_syn:
            seen_other = True
    bounds = [0, *starts, len(flow)]
    return [flow.iloc[a:b] for a, b in zip(bounds, bounds[1:])]


def _connection_attempts(flow: pd.DataFrame, server: str, service_port: int) -> list[dict]:
    """The attempts of one connection (see ``attempts``)."""
    rows = []
    request, any_request, last = None, False, float(flow["t"].max())
    syn = flow[(flow["dport"] == service_port) & flow["flags"].str.contains("S")]
    # a connection's first request counts from its SYN, as the client counts an attempt
    # from its connect(); later ones from their first segment
    opened = float(syn["t"].min()) if len(syn) else None
    for row in flow.itertuples(index=False):
        to_service = row.dport == service_port
        if to_service and row.payload > 0:
            if request is None:
                request = row.t if any_request or opened is None else opened
            any_request = True
        elif not to_service and row.payload > 0 and request is not None:
            rows.append({"endpoint": f"{server}:{service_port}", "sent": request, "received": row.t, "ok": True,
                         "interface": row.interface, "error": None})
            request = None
    if request is not None:               # a request that was never answered on its connection
        rows.append({"endpoint": f"{server}:{service_port}", "sent": request, "received": last, "ok": False,
                     "interface": None, "error": "no reply on the wire"})
    if not any_request and len(syn):           # a connection attempt that carried nothing
        rows.append({"endpoint": f"{server}:{service_port}", "sent": float(syn["t"].min()), "received": last,
                     "ok": False, "interface": None, "error": "connection without a request"})
    return rows


def as_the_client_took_them(seen: pd.DataFrame) -> pd.DataFrame:
    """The attempts without the answered ones that a later attempt overtook.

    In recovery the client races attempts at every candidate endpoint, takes the
    first reply and resets the rest unlogged; the wire still sees a reply on an
    earlier attempt that arrived a moment after the winner's.  Counting that one
    would end the wire's outage at its start, before the client's winner."""
    if seen.empty:
        return seen
    ordered = seen.sort_values("sent", kind="stable")
    answered = ordered["ok"].astype(bool).to_numpy()
    replies = np.where(answered, ordered["received"].to_numpy(dtype=float), np.inf)
    later_first = np.minimum.accumulate(replies[::-1])[::-1]          # the first reply to anything sent after
    overtaken = answered & (np.append(later_first[1:], np.inf) < replies)
    return ordered[~overtaken].reset_index(drop=True)


def _seen(pcap: Path) -> pd.DataFrame:
    """The attempts of a capture as the client took them."""
    return as_the_client_took_them(attempts(read_capture(pcap)))


def compare_trial(trial_dir: Path, user: str) -> list[dict]:
    """Per service of ``user``: each of the client's outages next to the wire's.

    An outage that began with the user's radio going down is compared by its end only:
    the wire cannot see the radio go down (its outage starts at a request that was in
    flight then, or, with none in flight, nothing crosses the wire until the radio is
    back).  It is explained when the first attempt the wire saw after it (or the end of
    the wire's own outage) is within 20 ms of the client's end."""
    pcap = trial_dir / f"capture-{user}.pcap"
    log = trial_dir / f"requests-{user}.jsonl"
    if not pcap.exists() or not log.exists():
        return []
    return compare(pd.DataFrame(read_jsonl(log)), _seen(pcap))


def compare(client: pd.DataFrame, seen: pd.DataFrame) -> list[dict]:
    """``compare_trial`` on the client's request rows and the wire's attempts as the client took them."""
    result = []
    capture_end = float(seen["received"].max()) if len(seen) else float("-inf")
    for service, rows in client.groupby("service"):
        endpoints = {f"{json.loads(e)[0] if isinstance(e, str) else e[0]}:{ports.SERVICE}"
                     for e in rows["endpoint"].dropna()}
        wire = seen[seen["endpoint"].isin(endpoints)]
        mine = outages(rows.to_dict("records"))
        theirs = [o for o in outages(wire.to_dict("records")) if o.seconds > 0] if not wire.empty else []
        for outage in mine:
            overlapping = [o for o in theirs if o.start <= outage.end + AGREE_S and o.end >= outage.start - AGREE_S]
            match = max(overlapping, key=lambda o: min(o.end, outage.end) - max(o.start, outage.start), default=None)
            difference = None if match is None else (match.seconds - outage.seconds)
            agree = difference is not None and abs(difference) <= AGREE_S
            explained, reason = (True, None) if agree else _why_not(outage, match, rows, wire, capture_end)
            result.append({"service": service, "client_start": outage.start, "client_s": outage.seconds,
                           "wire_start": None if match is None else match.start,
                           "wire_s": None if match is None else match.seconds,
                           "difference_s": difference, "agree": agree, "explained": explained,
                           "reason": reason})
    return result


def _why_not(outage, match, rows: pd.DataFrame, wire: pd.DataFrame, capture_end: float) -> tuple[bool, str]:
    """Whether an outage the wire does not agree on is explained, and the reason."""
    replies = rows.loc[rows["ok"].astype(bool) & (rows["sent"] >= outage.end - 1e-6), "received"]
    if not len(replies):
        return True, "the trial ended during it: no reply ended it, in the client's log or on the wire"
    recovered = float(replies.min())                                      # the reply that ended it
    if capture_end < recovered - AGREE_S:
        # the trial's last outage: tcpdump stops with the trial, the client a moment later
        return True, (f"the capture ended {1e3 * (recovered - capture_end):.0f} ms before the reply "
                      "that ended the client's outage")
    ending = wire[wire["ok"].astype(bool) & ((wire["received"] - recovered).abs() <= AGREE_S)]
    if len(ending) and float(ending["sent"].min()) - outage.end > AGREE_S:
        # the client's connect began as the radio came back; its first SYN never reached the
        # capture, and TCP sent it again after its initial timeout (1 s)
        return True, (f"the wire first saw the request that ended it "
                      f"{1e3 * (float(ending['sent'].min()) - outage.end):.0f} ms after the client sent it "
                      "(TCP resent a SYN the capture had not seen)")
    if outage.cause.startswith("interrupted") or "unreachable" in outage.cause.lower() \
            or "ENETUNREACH" in outage.cause:                            # the radio went down
        if match is not None:
            wire_end = match.end
        else:
            after = wire[wire["sent"] >= outage.start - AGREE_S]["sent"]
            wire_end = float(after.min()) if len(after) else None
        ends = None if wire_end is None else wire_end - outage.end
        seen_as = "a request in flight then" if match is not None and match.start < outage.start else \
            "the first attempt that crossed it"
        explained = ends is not None and abs(ends) <= AGREE_S
        if ends is None and (wire.empty or float(wire["received"].max()) < outage.end):
            explained = True
            seen_as = "nothing: the capture had ended"
        return explained, (f"the client counts from the radio going down ({outage.cause}), "
                           f"the wire from {seen_as}; the ends differ by "
                           f"{'-' if ends is None else f'{1e3 * ends:.1f}'} ms")
    gave_up = _timed_out(rows, outage)
    if len(gave_up):
        # the client gave up on replies the wire saw arrive later (a queue on the way, or a
        # service moved farther than the client's timeout reaches); what the wire counts
        # as an outage here, if anything, is a shorter one inside
        late = _answered_late(gave_up, wire)
        waited = float((gave_up["received"] - gave_up["sent"]).median())
        return len(late) > 0, (f"the client gave up on {len(gave_up)} requests after {1e3 * waited:.0f} ms; "
                               + (f"the wire saw {len(late)} of them answered, {1e3 * float(late.median()):.0f} "
                                  "ms after the request (median)" if len(late) else "the wire saw no late reply")
                               + ("" if match is None else f"; the wire's own outage is {match.seconds:.3f} s"))
    return False, "the wire saw no outage here" if match is None else "unexplained"


def _timed_out(rows: pd.DataFrame, outage) -> pd.DataFrame:
    """The client's requests in ``outage`` that it gave up on (its timeout)."""
    inside = rows[(rows["sent"] >= outage.start - 1e-6) & (rows["sent"] <= outage.end)]
    return inside[inside["error"].fillna("").astype(str).str.startswith("timeout")]


def _answered_late(gave_up: pd.DataFrame, wire: pd.DataFrame) -> pd.Series:
    """Per request the client gave up on, the wire's reply time (received - sent) when the wire
    saw an attempt sent with it (within 20 ms) answered after the client had stopped waiting."""
    answered = wire[wire["ok"].astype(bool)].sort_values("sent")
    if answered.empty:
        return pd.Series(dtype=float)
    paired = pd.merge_asof(gave_up.sort_values("sent")[["sent", "received"]], answered[["sent", "received"]],
                           on="sent", direction="nearest", tolerance=AGREE_S, suffixes=("", "_wire"))
    paired = paired[paired["received_wire"] >= paired["received"] - AGREE_S]
    return paired["received_wire"] - paired["sent"]


def path_after_handovers(trial_dir: Path, user: str, events: list[dict]) -> list[dict]:
    """After each handover of ``user``: the base station whose interface carried the first reply."""
    pcap, config = trial_dir / f"capture-{user}.pcap", trial_dir / f"mu-{user}.json"
    if not pcap.exists() or not config.exists():
        return []
    interface_ap = {port["interface"]: ap for ap, port in json.loads(config.read_text())["radio_ports"].items()}
    seen = _seen(pcap)
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
