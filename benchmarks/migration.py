"""Migration benchmark: downtime seen by the client, migration time, bytes, per service and mode.

    .venv/bin/python benchmarks/migration.py [--repeats 5] [--services counter,face] [--modes cold,...]
                                             [--option precopy_rounds=3 ...]
                                             [--env MEC_DETECT_ARENA=0 ...] [--images 3]
                                             [--calibration calibration/default.yaml]

The service ping-pongs between edge1 and edge2 (100 Mbps / 50 ms).  Before each
move the mobile user attaches to the destination's base station (the user
moved, the service follows), and its client keeps sending tasks, probing every
10 ms while the service is down.  Downtime is what that client saw.

``--calibration FILE`` fits eq. (5)'s psi, rho and set-up time
(``testbed.controller.estimators.fit_calibration``) to every migration measured
and writes them to FILE with where they came from: the planners' starting values.
``--option KEY=VALUE`` passes a mode option (e.g. ``precopy_share=1.0``,
``precopy_rounds=3``) to every migration; the table then shows the user's
median E2E while the pre-copy crossed the link its requests cross.
``--env KEY=VALUE`` sets the services' containers' environment (an app's own
settings); ``--images N``: the client cycles through the app's first N test
images (default 1: every task the same image, downtimes comparable across
moves; a model's memory then holds the same numbers after every task, which a
delta compared page by page does not send).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import percentile, report  # noqa: E402

from testbed import assets, images  # noqa: E402
from testbed.config import app_manifest, load_topology  # noqa: E402
from testbed.net.network import MecNetwork  # noqa: E402
from testbed.records import outages, read_jsonl  # noqa: E402
from testbed.stack import Stack  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AP_OF = {"edge1": "ap1", "edge2": "ap2"}


def median(values):
    return round(statistics.median(values), 3) if values else None


def bench(stack: Stack, app: str, mode: str, repeats: int, options: dict | None = None, env: dict | None = None,
          images_used: int = 1) -> dict:
    service = f"{app}-{mode}"
    log = stack.run_dir / "requests-mu.jsonl"
    log.unlink(missing_ok=True)
    manifest = app_manifest(app)
    instance = stack.agents["edge1"].call("deploy", spec={
        "service": service, "app": app, "image": images.image_name(app),
        "limits": {"cpus": manifest.cpus, "memory_mb": 2048}, "env": env or {}})
    workload = {"images": [str(assets.fetch(f)) for f in manifest.test_images[:images_used]]}
    # the app's timeout, as the runner sets it: a model service's task crosses the WAN in
    # slow start once the user has moved, so a shorter one would hide the migration's outage
    user = stack.start_user("mu", [{"service": service, "app": app, "workload": workload,
                                    "min_timeout": manifest.timeout,
                                    "endpoint": [instance["ip"], instance["port"]]}], initial_ap="ap1")
    host, records, windows, lost = "edge1", [], [], 0
    endpoint = [instance["ip"], instance["port"]]
    time.sleep(2.0)
    for _ in range(repeats):
        dest = "edge2" if host == "edge1" else "edge1"
        user.call("handover", ap=AP_OF[dest], duration=0.0)
        time.sleep(1.5)
        pre = stack.agents[host].call("migrate", service=service, dest=dest, mode=mode, phase="pre",
                                      options=options)
        user.call("set_endpoints", service=service, pending=[pre["dest_endpoint"]])
        time.sleep(1.0)
        started = time.time()
        record = stack.agents[host].call("migrate", service=service, dest=dest, mode=mode, phase="final",
                                         options=options)
        time.sleep(2.0)
        if not record["ok"] and record.get("postcopy_lost"):
            # CRIU's lazy-pages daemon can loop on a range the service freed (README, post-copy):
            # the migration fails, the service runs on here; counted, not timed
            lost += 1
            user.call("set_endpoints", service=service, current=endpoint, pending=[])
            continue
        if not record["ok"]:
            raise RuntimeError(f"{service}: {record.get('error')}")
        windows.append((started, time.time()))
        records.append(record)
        host, endpoint = dest, record["dest_endpoint"]
    stack.stop_user("mu")
    stack.agents[host].call("remove", service=service)
    for record in records:
        print({"checkpoint": record.get("checkpoint_steps"), "restore": record.get("restore_steps"),
               "sizes": record.get("sizes")}, flush=True)
    rows = [r for r in read_jsonl(log) if r["service"] == service]
    downtimes = []
    for start, end in windows:   # the part of every outage that falls in the final phase's window
        downtimes.append(sum(max(0.0, min(o.end, end) - max(o.start, start)) for o in outages(rows)))

    def phase(name):
        return [r["phases"][name]["seconds"] for r in records if name in r["phases"]]

    pre_windows = [(r["phases"]["pre_transfer"]["start"], r["phases"]["pre_transfer"]["end"]) for r in records
                   if "pre_transfer" in r["phases"]]
    first = min((min(p["start"] for p in r["phases"].values()) for r in records), default=0.0)
    e2e_pre = [r["e2e_ms"] for r in rows if r["ok"] and any(a <= r["sent"] <= b for a, b in pre_windows)]
    e2e_idle = [r["e2e_ms"] for r in rows if r["ok"] and r["sent"] < first]

    total = [r["phases"]["migration"]["seconds"] + r["phases"].get("pre_migration", {}).get("seconds", 0)
             + r["phases"].get("prepare", {}).get("seconds", 0) for r in records]
    return records, {
        "service": app, "mode": mode, "n": len(records), "postcopy_lost": lost,
        "downtime_median_s": median(downtimes), "downtime_p95_s": round(percentile(downtimes, 95), 3),
        "migration_total_s": median(total),
        "pre_transfer_s": median(phase("pre_transfer")),
        "precopy_rounds": median([len(r["precopy_rounds"]) for r in records if "precopy_rounds" in r]),
        "e2e_idle_ms": median(e2e_idle), "e2e_during_pre_ms": median(e2e_pre),
        "final_checkpoint_s": median(phase("final_checkpoint")), "delta_s": median(phase("delta")),
        "final_transfer_s": median(phase("final_transfer")), "restore_s": median(phase("restore")),
        "docker_restore_s": median([r["restore_steps"]["docker_restore"] for r in records if r.get("restore_steps")]),
        "delta_pct": median([100 * r["sizes"]["delta"] / r["sizes"]["pre_checkpoint"] for r in records
                             if "delta" in r["sizes"]]),
        "MB_before_downtime": round(statistics.median(r["bytes"].get("before_downtime", 0) for r in records) / 1e6, 3),
        "MB_during_downtime": round(statistics.median(r["bytes"].get("during_downtime", 0) for r in records) / 1e6, 3),
        "last_page_s": median(phase("postcopy_pages")),       # post-copy: after the restore (time to resume)
        "MB_after_downtime": round(statistics.median(r["bytes"].get("after_downtime", 0) for r in records) / 1e6, 3),
        "quiesced": f"{sum(bool(r.get('quiesced', {}).get('final')) for r in records)}/{len(records)}",
        "app_found": ",".join(str(r.get("app_found")) for r in records) if mode == "layered" else "",
    }


def key_values(parser, flag: str, items: list[str], parse) -> dict:
    """``KEY=VALUE`` arguments as a dict, each value through ``parse``."""
    found = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"{flag} {item!r}: expected KEY=VALUE")
        found[key] = parse(value)
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--services", default="counter,alpr,face,detect")
    parser.add_argument("--modes", default="cold,precopy-delta,layered,stateless",
                        help="comma-separated; also postcopy (20-30 s per move of a model service here)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a mode option for every migration (repeatable)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="the services' containers' environment (repeatable)")
    parser.add_argument("--images", type=int, default=1, help="test images the client cycles through")
    parser.add_argument("--calibration", type=Path, help="write eq. (5)'s fitted constants to this file")
    args = parser.parse_args()
    options = key_values(parser, "--option", args.option, yaml.safe_load)
    env = key_values(parser, "--env", args.env, str)
    if args.images < 1:
        parser.error("--images: at least 1")
    run_dir = Path(tempfile.mkdtemp(prefix="bench-migration-"))
    rows, measured = [], []
    with MecNetwork(load_topology(ROOT / "topologies" / "paper.yaml"), workdir=run_dir / "net") as net, \
            Stack(net, run_dir) as stack:
        stack.start_agents()
        for app in args.services.split(","):
            for mode in args.modes.split(","):
                records, row = bench(stack, app, mode, args.repeats, options, env, args.images)
                rows.append(row)
                measured += records
                print(rows[-1], flush=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    report("migration", "Migration between edge1 and edge2 (100 Mbps / 50 ms)", rows, [
        "Downtime: seen by the client (first failed task to first served task, probes every 10 ms), "
        "counted from the start of the final phase (failures before it are not the migration's).",
        "Phases are medians; final_transfer and restore overlap nothing (restore starts on arrival).",
        "Post-copy: restore_s is the time to resume (the process runs, its memory still at the source); "
        "last_page_s from then until the last page arrived; the downtime is what the client saw meanwhile; "
        "postcopy_lost: moves that failed on CRIU's lazy-pages loop (README), not timed (the service ran on "
        "at the source, the next move started from there).",
        f"Mode options: {options or 'defaults'}; container environment: {env or 'as in the image'}; "
        f"test images cycled: {args.images}; e2e_during_pre_ms: the user's median E2E while the "
        "pre-copy crossed the link its requests cross (e2e_idle_ms: before any migration)."])
    if args.calibration:
        write_calibration(args.calibration, measured, args)


def write_calibration(path: Path, records: list[dict], args) -> None:
    """Eq. (5)'s constants fitted to ``records`` (edge1 and edge2 have compute 1.0), with provenance."""
    import platform
    from datetime import datetime, timezone


    from testbed.controller.estimators import fit_calibration

    usable = [{**r, "image_bytes": r["sizes"]["image"], "compute_source": 1.0, "compute_dest": 1.0}
              for r in records if r.get("ok") and r.get("carries_state") and "image" in r.get("sizes", {})
              and not r["sizes"].get("lazy_pages")]     # a lazy restore is not eq. (5)'s
    fitted = fit_calibration(usable)
    body = {"psi_s_per_byte": float(f"{fitted['psi_s_per_byte']:.4g}"),
            "rho_s_per_byte": float(f"{fitted['rho_s_per_byte']:.4g}"),
            "setup_s": round(fitted["setup_s"], 3),
            "source": {"measured": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
                       "by": "benchmarks/migration.py", "services": args.services, "modes": args.modes,
                       "migrations": fitted["migrations"], "kernel": platform.release()}}
    header = ("# Eq. (5)'s constants for this testbed: measured, then refitted from every migration of a run.\n"
              "# Written by `benchmarks/migration.py --calibration` (see its header).\n")
    path.write_text(header + yaml.safe_dump(body, sort_keys=False))
    print(f"calibration written to {path}: {body}")


if __name__ == "__main__":
    main()
