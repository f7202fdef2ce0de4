"""The ``testbed`` command: run, doctor, clean, images, net, figures."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from testbed.config import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Emulated MEC testbed: network, services, migration, mobile user.")
images_app = typer.Typer(no_args_is_help=True, help="Build the service images (no registry).")
net_app = typer.Typer(no_args_is_help=True, help="Build a topology's network on its own.")
app.add_typer(images_app, name="images")
app.add_typer(net_app, name="net")
console = Console()
EXCLUDE_HELP = ("leave out the trials matching this glob over <run>/<scenario>/<planner>/rep<N> "
                "(e.g. a trial re-run after a fix); repeatable")


@app.callback()
def host_options(max_networks: int = typer.Option(
        None, "--max-networks", min=1, max=15,
        help="networks this host may run at once (default: one per core; env MEC_MAX_NETWORKS)")):
    """Options of every command."""
    import os

    from testbed.net.hostlock import MAX_NETWORKS_ENV

    if max_networks:
        os.environ[MAX_NETWORKS_ENV] = str(max_networks)


def print_error(message) -> None:
    """An error on one line, however long its paths (not wrapped at the console's width)."""
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2):
    print_error(message)
    raise typer.Exit(code)


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="machine-readable output")):
    """List what this host has and lacks, with a one-line fix for each gap."""
    from testbed.doctor import as_json as dump, run_checks

    checks = run_checks()
    if as_json:
        print(dump(checks))
    else:
        table = Table(title="testbed doctor")
        for column in ("check", "status", "detail", "fix"):
            table.add_column(column, overflow="fold")
        for check in checks:
            status = "[green]ok[/green]" if check.ok else ("[red]MISSING[/red]" if check.required
                                                         else "[yellow]absent[/yellow]")
            table.add_row(check.name, status, check.detail, "" if check.ok else check.fix)
        console.print(table)
    if any(not c.ok and c.required for c in checks):
        raise typer.Exit(1)


@app.command()
def clean(all_: bool = typer.Option(False, "--all", help="every network of this host, live or not"),
          network: int = typer.Option(None, min=0, max=14,
                                      help="this network of the host (default: MEC_NETWORK, else 0)")):
    """Remove the namespaces, links, containers and helper processes one network of the testbed
    created (also after a killed run); `--all` for every network."""
    from testbed.clean import clean as clean_network
    from testbed.net.namespaces import ALL

    try:
        report = clean_network(ALL if all_ else network)
    except ValueError as exc:
        fail(str(exc))
    console.print(report.summary())


@images_app.command("build")
def images_build(apps: list[str] = typer.Argument(None, help="apps to build (default: all)"),
                 force: bool = typer.Option(False, help="rebuild even if up to date")):
    """Build the base image and the service images (cached by content hash)."""
    from testbed import images

    try:
        results = images.build_all(apps or None, force=force, log=lambda m: console.print(m))
    except images.ImageBuildError as exc:
        fail(str(exc), 1)
    for name, status in results.items():
        console.print(f"{images.image_name(name)}: {status}")


@net_app.command("check")
def net_check(topology: Path, set_: list[str] = typer.Option([], "--set", help="KEY=VALUE override")):
    """Build a topology, ping every server pair once, tear it down."""
    from testbed.config import load_topology
    from testbed.net.network import MecNetwork
    from testbed.net.probe import ping_rtt

    try:
        spec = load_topology(topology, set_)
    except ConfigError as exc:
        fail(str(exc))
    with MecNetwork(spec) as net:
        console.print(f"up in {net.timings['start_s']:.2f} s, backend {net.backend} ({net.backend_reason})")
        servers = spec.nodes_with_role("cloud", "edge")
        table = Table(title=f"{spec.name}: RTT between servers")
        table.add_column("pair")
        table.add_column("configured ms", justify="right")
        table.add_column("measured ms", justify="right")
        for i, a in enumerate(servers):
            for b in servers[i + 1:]:
                expected = 2e3 * net.plan.one_way_delay(a, b)
                rtts = ping_rtt(net.node(a), net.address(b), count=5)
                table.add_row(f"{a}-{b}", f"{expected:.1f}", f"{sorted(rtts)[len(rtts) // 2]:.2f}")
        console.print(table)
    console.print(f"down in {net.timings['stop_s']:.2f} s")


@net_app.command("list")
def net_list():
    """The networks on this host: number, prefix, owner process (or gone), namespaces, containers."""
    from testbed.clean import networks_on_host

    rows = networks_on_host()
    if not rows:
        console.print("no testbed network on this host")
        return
    table = Table(title="testbed networks")
    for column in ("network", "prefix", "owner", "namespaces", "containers"):
        table.add_column(column)
    for row in rows:
        owner = str(row["owner"]) if row["owner"] else "[yellow]gone[/yellow] (testbed clean --network " \
            f"{row['network']})"
        table.add_row(str(row["network"]), row["prefix"], owner, str(row["namespaces"]), str(row["containers"]))
    console.print(table)


@net_app.command("up")
def net_up(topology: Path, set_: list[str] = typer.Option([], "--set", help="KEY=VALUE override"),
           hold: float = typer.Option(0, help="seconds to keep it up (0: until Ctrl-C)")):
    """Build a topology and keep it up; use `ip netns exec tb-<node> ...` meanwhile (`tb<n>-<node>`
    when it is the host's network n > 0)."""
    import time

    from testbed.config import load_topology
    from testbed.net.network import MecNetwork

    spec = load_topology(topology, set_)
    with MecNetwork(spec) as net:
        console.print(f"{spec.name} up as network {net.number} in {net.timings['start_s']:.2f} s "
                      f"(backend {net.backend}); namespaces: " + " ".join(net.netns(n) for n in spec.nodes),
                      highlight=False)
        deadline = time.monotonic() + hold if hold else None
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.2)
        except KeyboardInterrupt:
            console.print("stopping")
    console.print(f"down in {net.timings['stop_s']:.2f} s")


@app.command()
def run(experiment: Path, set_: list[str] = typer.Option([], "--set", help="KEY=VALUE override"),
        repeat: int = typer.Option(None, help="repetitions of every trial (the file's repeat: otherwise)"),
        scenario: list[str] = typer.Option([], "--scenario", help="run only this scenario of the file (repeatable)"),
        runs: Path = typer.Option(None, help="where run directories go (default: ./runs)"),
        figures_: bool = typer.Option(True, "--figures/--no-figures", help="make the figures at the end"),
        dashboard_: bool = typer.Option(False, "--dashboard", help="serve the live dashboard while the run goes"),
        host: str = typer.Option("127.0.0.1", help="--dashboard: the address to serve on"),
        port: int = typer.Option(8050, help="--dashboard: the port")):
    """Validate an experiment, run every trial (scenario x planner x repetition) on a fresh
    network, write the run record."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from testbed.config import load_experiment_with_source
    from testbed.runner import Runner

    try:
        spec, source = load_experiment_with_source(experiment, set_ + ([f"repeat={repeat}"] if repeat else []),
                                                   scenarios=scenario)
    except ConfigError as exc:
        fail(str(exc))
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                  TimeRemainingColumn(), console=console, transient=False) as progress:
        runner = Runner(spec, source, run_root=runs, log=lambda m: progress.console.print(m),
                        dashboard={"host": host, "port": port} if dashboard_ else None)
        tasks = {t.label: progress.add_task(f"{t.label:>24}", total=t.spec.duration) for t in runner.trials(Path("."))}

        def update(label, elapsed, duration):
            progress.update(tasks[label], completed=elapsed)

        runner.progress = update
        try:
            run_dir = runner.run()
        except KeyboardInterrupt:
            console.print(f"[yellow]interrupted[/yellow]: cleaned up; the run is marked incomplete in "
                          f"{runner.run_dir}")
            raise typer.Exit(130)
    _print_summary(run_dir)
    console.print(f"run record: {run_dir}")
    if figures_:
        from analysis.figures import make_all

        paths = make_all([run_dir], run_dir / "figures")
        console.print(f"figures ({len([p for p in paths if p.suffix == '.png'])} PNG, with PDF and CSV): "
                      f"{run_dir / 'figures'}")


@app.command()
def dashboard(run_dir: Path, trial: str = typer.Option(None, help="scenario/planner/repK (default: the first)"),
              host: str = typer.Option("127.0.0.1", help="the address to serve on"),
              port: int = typer.Option(8050, help="the port")):
    """Replay a finished run in the browser: map, radio, delays, servers and events, with a
    time slider and play/pause at 1x-20x (read-only)."""
    from testbed.dashboard import serve
    from testbed.dashboard.app import create_app

    try:
        app_ = create_app(record=run_dir, trial=trial)
    except (FileNotFoundError, ValueError, ConfigError) as exc:
        fail(str(exc))
    console.print(f"replaying {run_dir} on http://{host}:{port}/  (Ctrl-C to stop)")
    serve(app_, host, port)


@app.command(context_settings={"allow_extra_args": False})
def sim(target: list[str] = typer.Argument(..., metavar="FILE | calibrate RUN... | validate RUN | sumo DIR", help=(
            "an experiment file to simulate; `calibrate` and the run records to fit from; `validate` and an "
            "emulated run to simulate again with its own calibration; `sumo` and a directory for vehicle "
            "traces generated with SUMO")),
        set_: list[str] = typer.Option([], "--set", help="KEY=VALUE override"),
        runs: Path = typer.Option(None, help="where run directories go (default: ./runs)"),
        out: Path = typer.Option(None, help="calibrate: the file to write (default: print it)"),
        figures_: bool = typer.Option(True, "--figures/--no-figures", help="make the figures at the end")):
    """Simulate an experiment at city scale with the same planners; fit the simulator's
    calibration from emulated runs (`testbed sim calibrate RUN...`); compare an emulated run
    with its simulation (`testbed sim validate RUN`)."""
    from testbed import sim as simulator

    modes = {"calibrate": _sim_calibrate, "validate": _sim_validate, "sumo": _sim_sumo}
    if target[0] in modes:
        modes[target[0]](target[1:], set_=set_, runs=runs, out=out)
        return
    if len(target) != 1:
        fail("testbed sim FILE: one experiment file")
    try:
        run_dir = simulator.simulate(Path(target[0]), set_, run_root=runs, log=console.print, figures=figures_)
    except ConfigError as exc:
        fail(str(exc))
    console.print(f"run record: {run_dir}")


def _sim_calibrate(args: list[str], out: Path | None, **unused) -> None:
    import yaml

    from testbed import sim as simulator

    if not args:
        fail("testbed sim calibrate RUN...: name at least one run record")
    try:
        fitted = simulator.calibrate([Path(t) for t in args])
    except ConfigError as exc:
        fail(str(exc))
    text = yaml.safe_dump(fitted, sort_keys=False)
    if out:
        out.write_text(text)
        console.print(f"calibration: {out}")
    else:
        console.print(text)


def _sim_validate(args: list[str], runs: Path | None, **unused) -> None:
    from analysis.sim_validation import validate

    if len(args) != 1:
        fail("testbed sim validate RUN: one emulated run record")
    try:
        sim_dir, _ = validate(Path(args[0]), run_root=runs, log=console.print)
    except ConfigError as exc:
        fail(str(exc))
    console.print((sim_dir / "validation.md").read_text())
    console.print(f"run record: {sim_dir}")


def _sim_sumo(args: list[str], set_: list[str], **unused) -> None:
    from testbed.config import parse_override
    from testbed.mobility import sumo

    if len(args) != 1:
        fail("testbed sim sumo DIR [--set grid=8 --set length=500 --set period=5 --set duration=3600 "
             "--set seed=1 --set vehicles=N --set sample=1]: one output directory")
    known = {"grid": int, "length": float, "period": float, "duration": float, "seed": int, "speed": float,
             "vehicles": int, "sample": float}
    options = {}
    for text in set_:
        (key, *_), value = parse_override(text)
        if key not in known:
            fail(f"--set {text!r}: sim sumo takes {', '.join(known)}")
        try:
            options[key] = known[key](value)
        except (TypeError, ValueError):
            fail(f"--set {text!r}: {key} must be a {known[key].__name__}")
    try:
        path = sumo.generate(Path(args[0]), **options)
    except (ConfigError, RuntimeError) as exc:
        fail(str(exc))
    console.print(f"vehicle traces: {path} (mobility: {{model: fcd, file: {path}}})")


@app.command()
def sweep(experiment: Path, grid: list[str] = typer.Option([], "--grid", help="KEY=v1,v2,... (repeatable)"),
          repeat: int = typer.Option(None, help="repetitions of every point (the file's sweep.repeat otherwise)"),
          parallel: int = typer.Option(None, help="trials at once on the local cluster"),
          cluster: str = typer.Option(None, help="a Dask scheduler (tcp://host:8786) with `testbed worker`s"),
          simulate: bool = typer.Option(False, "--sim", help="simulated trials (testbed sim) instead of emulated"),
          set_: list[str] = typer.Option([], "--set", help="KEY=VALUE override of every trial"),
          out: Path = typer.Option(None, help="the sweep directory (an existing one resumes)"),
          runs: Path = typer.Option(None, help="where a new sweep directory goes (default: ./runs)"),
          figures_: bool = typer.Option(True, "--figures/--no-figures", help="make the figures at the end")):
    """Run a parameter sweep: every grid point x repetition is one trial (its own record), as Dask
    tasks; resumes after Ctrl-C or a lost worker."""
    from testbed.config import load_experiment
    from testbed.sweep import Sweep, file_grid, parse_grid

    try:
        spec = load_experiment(experiment, set_)
        planned = file_grid(spec.sweep.grid)
        planned.update(parse_grid(grid))
        if not planned:
            fail("nothing to sweep: give --grid KEY=v1,v2 or a sweep: grid in the file")
        runner = Sweep(experiment, planned, repeat or spec.sweep.repeat, simulate, set_, directory=out, run_root=runs)
    except ConfigError as exc:
        fail(str(exc))
    console.print(f"sweep: {len(runner.trials)} trials in {runner.directory}")
    try:
        directory = runner.run(parallel or spec.sweep.parallel, cluster, log=console.print)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/yellow]: finished trials are kept; resume with --out {runner.directory}")
        raise typer.Exit(130)
    console.print(f"trials: {directory / 'trials.csv'}")
    if figures_:
        from analysis.sweep_figures import make_all

        paths = make_all(directory)
        console.print(f"figures ({len([p for p in paths if p.suffix == '.png'])} PNG): {directory / 'figures'}")


@app.command()
def worker(scheduler: str = typer.Argument(..., help="the Dask scheduler, tcp://host:8786"),
           networks: int = typer.Option(None, min=1, max=15,
                                        help="testbed networks this host holds at once (default: one per core)"),
           nthreads: int = typer.Option(None, help="trials at once (default: networks)")):
    """A Dask worker for `testbed sweep --cluster`, declaring the networks this host can hold."""
    from testbed.net.hostlock import max_networks
    from testbed.sweep import worker as run_worker

    run_worker(scheduler, networks or max_networks(), nthreads)


@app.command()
def figures(run_dirs: list[Path], out: Path = typer.Option(None, help="default: <first run>/figures"),
            exclude: list[str] = typer.Option([], help=EXCLUDE_HELP)):
    """Make the seeds' figures and tables from one or several runs (or a sweep's, from its directory)."""
    from analysis.figures import make_all

    if len(run_dirs) == 1 and (run_dirs[0] / "sweep.json").exists():
        from analysis.sweep_figures import make_all as sweep_figures

        for path in sweep_figures(run_dirs[0], out):
            console.print(str(path))
        return
    for path in _selecting_trials(make_all, run_dirs, out or run_dirs[0] / "figures", exclude):
        console.print(str(path))


@app.command()
def report(run_dirs: list[Path], out: Path = typer.Option(None, help="default: <first run>/report"),
           exclude: list[str] = typer.Option([], help=EXCLUDE_HELP)):
    """Each seed's claims next to what the runs measured: report.md and report.html."""
    from analysis.report import write_report

    for path in _selecting_trials(write_report, run_dirs, out or run_dirs[0] / "report", exclude):
        console.print(str(path))


def _selecting_trials(make, run_dirs, out, exclude) -> list:
    """``make(run_dirs, out, exclude)`` over finished runs; an ``--exclude`` that names no
    trial, or a directory that is not a finished run, is the user's error."""
    from analysis.figures import UnknownTrial

    for run_dir in run_dirs:
        if not (run_dir / "requests.parquet").exists():
            fail(f"{run_dir}: not a finished run directory (no requests.parquet)")
    try:
        return make(run_dirs, out, exclude)
    except UnknownTrial as error:
        fail(str(error))


def _print_summary(run_dir: Path):
    import json

    summary = json.loads((run_dir / "summary.json").read_text())
    table = Table(title=f"summary: {run_dir.name} (mean over trials [95 % interval])")
    keys = ["scenario", "planner", "service", "trials"]
    metrics = ["e2e_mean_ms", "processing_mean_ms", "transmission_mean_ms", "downtime_total_s", "outages",
               "handovers", "migrations_ok", "counter_breaks"]
    for column in keys + metrics:
        table.add_column(column, justify="right")

    def cell(stat: dict) -> str:
        if stat["mean"] is None:
            return f"- ({stat.get('missing')})"
        text = f"{stat['mean']:.2f}"
        return text + (f" [{stat['ci95'][0]:.2f}, {stat['ci95'][1]:.2f}]" if stat.get("ci95") else "")

    for row in summary["aggregate"]:
        table.add_row(*[str(row[k]) for k in keys], *[cell(row[m]) for m in metrics])
    console.print(table)


@app.command()
def export(run_dir: Path, csv: bool = typer.Option(True, help="write <table>.csv next to the Parquet files")):
    """Export a run's records as CSV."""
    from testbed.records import export_csv

    for path in export_csv(run_dir):
        console.print(str(path))


def _terminate_as_interrupt(_signum, _frame):
    raise KeyboardInterrupt


def main():
    import signal

    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    # Ctrl-C means stop cleanly, even when started in the background (where the
    # shell would have us ignore SIGINT).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        app()
    except ConfigError as exc:
        print_error(exc)
        sys.exit(2)


if __name__ == "__main__":
    main()
