"""The wire's view of task attempts (analysis.wire.attempts), from hand-made packet rows."""

import pandas as pd

from analysis.wire import as_the_client_took_them, attempts, compare

CLIENT, SERVER, PORT = "10.1.9.2", "172.16.2.2", 7000


def packet(t, flags, payload=0, outbound=True, client_port=40000, client=CLIENT):
    if outbound:
        return {"t": t, "interface": "mu-eth1", "src": client, "sport": client_port, "dst": SERVER, "dport": PORT,
                "flags": flags, "payload": payload}
    return {"t": t, "interface": "mu-eth1", "src": SERVER, "sport": PORT, "dst": client, "dport": client_port,
            "flags": flags, "payload": payload}


def test_a_reused_client_port_starts_a_new_connection_each_time():
    packets = pd.DataFrame([
        packet(1.0, "S"), packet(1.002, "RA", outbound=False),                          # refused
        packet(1.1, "S"), packet(1.15, "SA", outbound=False), packet(1.2, "PA", 100),   # the same port at once
        packet(1.3, "PA", 50, outbound=False),
        packet(100.0, "S"), packet(100.05, "SA", outbound=False), packet(100.1, "PA", 100),  # and minutes later
        packet(100.2, "PA", 50, outbound=False),
    ])
    seen = attempts(packets, PORT)
    assert seen[["sent", "received", "ok"]].values.tolist() == [[1.0, 1.002, False], [1.1, 1.3, True],
                                                                [100.0, 100.2, True]]
    assert seen["error"].tolist()[0] == "connection without a request"


def test_the_same_port_on_another_of_the_users_addresses_is_another_connection():
    # a SYN that went unanswered from the address at one base station, and a minute later the
    # same port from the address at the next: two attempts, not one retransmitted SYN
    packets = pd.DataFrame([packet(0.0, "S", client="10.1.8.2"),
                            packet(60.0, "S"), packet(60.05, "SA", outbound=False), packet(60.1, "PA", 100),
                            packet(60.3, "PA", 50, outbound=False)])
    seen = attempts(packets, PORT)
    assert seen[["sent", "received", "ok"]].values.tolist() == [[0.0, 0.0, False], [60.0, 60.3, True]]


def test_a_retransmitted_syn_stays_one_attempt_counted_from_the_first():
    packets = pd.DataFrame([packet(5.0, "S"), packet(6.0, "S"), packet(6.05, "SA", outbound=False),
                            packet(6.1, "PA", 100), packet(6.2, "PA", 50, outbound=False),
                            packet(6.3, "PA", 100), packet(6.4, "PA", 50, outbound=False)])
    seen = attempts(packets, PORT)
    assert seen[["sent", "received", "ok"]].values.tolist() == [[5.0, 6.2, True], [6.3, 6.4, True]]


def test_an_answered_attempt_a_later_one_overtook_is_not_the_clients():
    seen = pd.DataFrame([
        {"endpoint": "e", "sent": 0.0, "received": 0.1, "ok": False, "interface": None, "error": "refused"},
        {"endpoint": "e", "sent": 0.614, "received": 0.841, "ok": True, "interface": "i", "error": None},
        {"endpoint": "e", "sent": 0.698, "received": 0.838, "ok": True, "interface": "i", "error": None},  # won
        {"endpoint": "e", "sent": 0.721, "received": 0.839, "ok": True, "interface": "i", "error": None},
        {"endpoint": "e", "sent": 0.9, "received": 1.0, "ok": True, "interface": "i", "error": None},
    ])
    assert as_the_client_took_them(seen)["sent"].tolist() == [0.0, 0.698, 0.721, 0.9]


def request(sent, received, ok, error=None):
    return {"service": "counter-mu", "endpoint": [SERVER, PORT], "sent": sent, "received": received, "ok": ok,
            "error": error, "interface": "mu-eth1"}


def seen_as(sent, received, ok, interface="mu-eth1", error=None):
    """One attempt as the wire saw it."""
    return {"endpoint": f"{SERVER}:{PORT}", "sent": sent, "received": received, "ok": ok,
            "interface": interface if ok else None, "error": error}


def test_timeouts_the_wire_saw_answered_late_are_explained_though_the_wire_has_an_outage_of_its_own():
    # the service moved to the cloud: every reply takes 0.6 s, the client gives up at 0.5 s, for 3 s;
    # then a migration refuses connections for 0.5 s, which the wire sees too
    client = [request(0.0, 0.05, True)]
    client += [request(0.1 + 0.55 * i, 0.6 + 0.55 * i, False, "timeout") for i in range(6)]
    client += [request(3.5, 3.55, False, "ConnectionRefusedError"), request(4.0, 4.05, True)]
    endpoint = f"{SERVER}:{PORT}"
    seen = pd.DataFrame([{"endpoint": endpoint, "sent": r["sent"], "interface": "mu-eth1", "error": None,
                          "received": r["sent"] + (0.6 if r["error"] == "timeout" else 0.05),
                          "ok": r["error"] != "ConnectionRefusedError"} for r in client])
    seen.loc[seen["sent"] == 3.5, "error"] = "connection without a request"
    (outage,) = compare(pd.DataFrame(client), seen)
    assert outage["client_s"] > 3.5 and outage["wire_s"] < 1.0
    assert outage["explained"] and not outage["agree"]
    assert "gave up on 6 requests after 500 ms" in outage["reason"] and "6 of them answered, 600 ms" in outage["reason"]


def test_timeouts_the_wire_saw_no_reply_to_stay_unexplained():
    client = [request(0.0, 0.05, True), request(0.1, 0.6, False, "timeout"), request(0.7, 0.75, True)]
    seen = pd.DataFrame([seen_as(r["sent"], r["received"], True) for r in client if r["ok"]])
    (outage,) = compare(pd.DataFrame(client), seen)
    assert not outage["explained"] and "no late reply" in outage["reason"]


def test_an_outage_the_capture_did_not_see_end_is_explained_by_the_captures_end():
    client = [request(0.0, 0.05, True), request(0.1, 0.15, False, "ConnectionRefusedError"),
              request(1.6, 2.0, True)]
    seen = pd.DataFrame([seen_as(0.0, 0.05, True), seen_as(0.1, 1.55, False, error="no reply on the wire")])
    (outage,) = compare(pd.DataFrame(client), seen)
    assert outage["explained"]
    assert outage["reason"] == "the capture ended 450 ms before the reply that ended the client's outage"


def test_an_outage_no_reply_ended_is_explained_by_the_trials_end():
    client = [request(0.0, 0.05, True), request(0.1, 0.15, False, "ConnectionRefusedError"),
              request(1.3, 1.35, False, "ConnectionRefusedError")]
    seen = pd.DataFrame([seen_as(0.0, 0.05, True), seen_as(0.1, 1.45, False, error="no reply on the wire")])
    (outage,) = compare(pd.DataFrame(client), seen)
    assert outage["explained"] and outage["reason"].startswith("the trial ended during it")


def test_a_request_the_wire_first_saw_a_second_late_is_explained_by_tcps_resent_syn():
    # the radio comes back at 0.5 s; the client's connect starts then, its SYN is lost, TCP resends
    # it at 1.5 s and the reply comes at 2.0 s
    client = [request(0.0, 0.05, True), request(0.1, 0.1, False, "interrupted: radio link down"),
              request(0.5, 2.0, True)]
    seen = pd.DataFrame([seen_as(0.0, 0.05, True), seen_as(0.08, 1.4, False, error="no reply on the wire"),
                         seen_as(1.5, 2.0, True, interface="mu-eth2")])
    (outage,) = compare(pd.DataFrame(client), seen)
    assert not outage["agree"] and outage["explained"]
    assert outage["reason"].startswith("the wire first saw the request that ended it 1000 ms after")
