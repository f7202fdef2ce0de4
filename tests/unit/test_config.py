"""The one schema: good files load, bad ones are rejected naming file, field and reason."""

from pathlib import Path

import pytest
import yaml

from testbed.config import ConfigError, apply_overrides, load_experiment_with_source, load_topology

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "topologies" / "paper.yaml"


def paper_dict():
    return yaml.safe_load(PAPER.read_text())


def write(tmp_path, data) -> Path:
    path = tmp_path / "topo.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_paper_topology_reproduces_seed_002(paper_spec):
    assert paper_spec.nodes_with_role("cloud") == ["cloud"]
    assert paper_spec.nodes_with_role("edge") == ["edge1", "edge2", "edge3"]
    assert paper_spec.nodes_with_role("ap") == ["ap1", "ap2", "ap3"]
    assert paper_spec.nodes_with_role("mu") == ["mu"]
    edge_edge = paper_spec.links["edge_edge"]
    assert (edge_edge.bandwidth, edge_edge.delay) == (100.0, pytest.approx(0.050))
    edge_cloud = paper_spec.links["edge_cloud"]
    assert (edge_cloud.bandwidth, edge_cloud.delay) == (75.0, pytest.approx(0.150))
    pairs = {frozenset((c.a, c.b)): c.link_class for c in paper_spec.connections}
    assert pairs[frozenset(("edge1", "edge2"))] == "edge_edge"
    assert pairs[frozenset(("edge2", "edge3"))] == "edge_edge"
    for edge in ("edge1", "edge2", "edge3"):
        assert pairs[frozenset((edge, "cloud"))] == "edge_cloud"
    assert frozenset(("edge1", "edge3")) not in pairs  # a chain, as in Fig. 3


@pytest.mark.parametrize("mutate,field,reason", [
    (lambda d: d["nodes"]["edge2"].pop("role"), "nodes.edge2.role", "field required"),
    (lambda d: d["links"]["edge_edge"].update(bandwidth="-5Mbps"), "links.edge_edge.bandwidth",
     "greater than 0"),
    (lambda d: d["connections"][0].update({"class": "fibre"}), "connections.0.class",
     "unknown link class 'fibre'"),
    (lambda d: d["connections"][1].update(b="edge9"), "connections.1.b", "unknown node 'edge9'"),
    (lambda d: d["nodes"].pop("edge3"), "connections.1.b", "unknown node 'edge3'"),
    (lambda d: d["links"]["edge_edge"].update(delay=50), "links.edge_edge.delay", "needs a unit"),
    (lambda d: d["links"]["wireless"].update(jitter="5ms"), "links.wireless", "jitter"),
    (lambda d: d["nodes"]["ap1"].pop("position"), "nodes.ap1", "needs a position"),
    (lambda d: d["nodes"].update({"Edge-4": {"role": "edge"}}), "nodes", "Edge-4"),
    (lambda d: d.update(colour="blue"), "colour", "unknown field"),
    (lambda d: d["network"].update(backend="tachyon"), "network.backend", "netem"),
])
def test_bad_topology_names_file_field_and_reason(tmp_path, mutate, field, reason):
    data = paper_dict()
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as caught:
        load_topology(path)
    message = str(caught.value)
    assert str(path) in message
    line = next((l for l in message.splitlines() if l.strip().startswith(field)), None)
    assert line is not None, message
    assert reason in line, message


def test_unreadable_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nlinks: {a: [1, 2}\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: line 2"):
        load_topology(path)


def test_overrides_apply_before_validation():
    spec = load_topology(PAPER, ["links.edge_edge.delay=30ms", "connections.edge3-cloud.delay=100ms",
                                 "network.backend=delayline"])
    assert spec.links["edge_edge"].delay == pytest.approx(0.030)
    conn = next(c for c in spec.connections if {c.a, c.b} == {"edge3", "cloud"})
    assert spec.link_params(conn).delay == pytest.approx(0.100)
    assert spec.link_params(conn).bandwidth == 75.0  # the rest of the class stays
    assert spec.network.backend == "delayline"


def test_override_errors_name_the_key():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["links.edge_edge.delay"])
    with pytest.raises(ConfigError, match="no item 'edge7-cloud'"):
        apply_overrides(paper_dict(), ["connections.edge7-cloud.delay=1ms"])
    with pytest.raises(ConfigError, match="links.edge_edge.bandwidth"):
        load_topology(PAPER, ["links.edge_edge.bandwidth=0"])


def test_an_experiment_changes_its_topology_with_its_own_set_list_and_the_command_line_wins(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({
        "name": "x", "topology": str(PAPER), "duration": "10s", "planners": ["nearest"],
        "set": ["nodes.edge1.cpus=0.5", "links.edge_edge.delay=30ms", "duration=20s"],
        "users": {"mu": {"services": [{"app": "counter"}]}}}))
    spec, source = load_experiment_with_source(path, ["links.edge_edge.delay=40ms"])
    assert spec.topology.nodes["edge1"].cpus == 0.5 and spec.topology.nodes["edge2"].cpus == 4
    assert spec.topology.links["edge_edge"].delay == pytest.approx(0.040)
    assert spec.duration == 20
    # the record holds the result, not the list: loading it again changes nothing
    assert "set" not in source
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(source))
    assert load_experiment_with_source(again)[0] == spec


@pytest.mark.parametrize("own,reason", [
    ("nodes.edge1.cpus=0.5", "set: expected a list of KEY=VALUE strings"),
    (["colour=blue"], "set: 'colour=blue': 'colour' is neither an experiment nor a topology field"),
    (["nodes.edge1.cpus=-1"], "nodes.edge1.cpus"),
])
def test_a_bad_set_list_names_the_file_and_the_key(tmp_path, own, reason):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "topology": str(PAPER), "duration": "10s", "planners": ["nearest"],
                                    "set": own, "users": {"mu": {"services": [{"app": "counter"}]}}}))
    with pytest.raises(ConfigError) as caught:
        load_experiment_with_source(path)
    message = str(caught.value)
    assert reason in message, message
    assert str(path) in message or str(PAPER) in message, message


def test_every_experiment_file_loads():
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        spec, _ = load_experiment_with_source(path)
        assert spec.name == path.stem, path


def experiment_with(tmp_path, **fields) -> Path:
    data = {"name": "x", "topology": str(PAPER), "duration": "10s", "planners": ["nearest"],
            "users": {"mu": {"services": [{"app": "counter"}]}}, **fields}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("fields,field,reason", [
    ({"planners": [{"name": "orchestrated", "params": {"horizn_s": 10}}]}, "planners.0.params.horizn_s",
     "unknown field"),
    ({"planners": [{"name": "orchestrated", "params": {"margin": 2}}]}, "planners.0.params.margin", "less than 1"),
    ({"planners": [{"name": "green-first", "params": {"threshold": "high"}}]}, "planners.0.params.threshold",
     "valid number"),
    ({"planners": ["oracle"]}, "planners.0", "unknown planner 'oracle'"),
    ({"migration": {"mode": "teleport"}}, "migration", "unknown migration mode 'teleport'"),
    ({"migration": {"mode": "precopy-delta", "delta": "bsdiff"}}, "migration.delta", "unknown delta encoder"),
    ({"migration": {"mode": "cold", "quiesse": 1}}, "migration.quiesse", "unknown field"),
    ({"migration": {"mode": "precopy-delta", "precopy_rounds": 0}}, "migration.precopy_rounds",
     "greater than or equal to 1"),
    ({"migration": {"mode": "precopy-delta", "min_shrink": 1.0}}, "migration.min_shrink", "less than 1"),
    ({"migration": {"mode": "precopy-delta", "postcopy": True, "prepaging_window_mb": 0}}, "migration",
     "prepaging_window_mb must be above 0 with postcopy"),
    ({"users": {"mu": {"mobility": {"model": "round_trip", "sped": 2}, "services": [{"app": "counter"}]}}},
     "users.mu.mobility.sped", "unknown field"),
    ({"users": {"mu": {"mobility": {"model": "hover"}, "services": [{"app": "counter"}]}}},
     "users.mu.mobility.model", "unknown mobility model 'hover'"),
    ({"users": {"mu": {"services": [{"app": "detect", "env": {"MEC DETECT": 1}}]}}}, "users.mu.services.0.env",
     "'MEC DETECT' is not an environment variable name"),
    ({"users": {"mu": {"services": [{"app": "detect", "env": {"OMP_NUM_THREADS": 8}}]}}},
     "users.mu.services.0.env", "OMP_NUM_THREADS is set by the testbed"),
])
def test_extension_parameters_are_validated_by_their_own_classes(tmp_path, fields, field, reason):
    """Planners, migration modes and mobility models each declare their parameters;
    a typo in any of them is a config error naming the field, before anything is built."""
    path = experiment_with(tmp_path, **fields)
    with pytest.raises(ConfigError) as caught:
        load_experiment_with_source(path)
    message = str(caught.value)
    line = next((l for l in message.splitlines() if l.strip().startswith(field)), None)
    assert line is not None and reason in line, message


def test_extension_parameters_get_their_declared_defaults(tmp_path):
    spec, _ = load_experiment_with_source(experiment_with(
        tmp_path, planners=[{"name": "orchestrated", "params": {"solver": "cbc"}}], migration={"mode": "precopy-delta"}))
    params = spec.planners[0].typed_params()
    assert (params.solver, params.horizon_s, params.margin) == ("cbc", 30.0, 0.1)
    assert spec.migration.options() == {"quiesce": 1.0, "delta": "pages", "precopy_rounds": 1, "precopy_share": 1.0,
                                        "min_shrink": 0.2, "postcopy": False, "page_timeout": 600.0,
                                        "prepaging_window_mb": 32.0}


def test_a_services_environment_reaches_the_container_it_deploys_and_migrates(tmp_path):
    """`env` of a service use: validated, made strings, carried by the controller's placement into
    the container spec an agent deploys and sends to a migration's destination."""
    from testbed.controller.config import Placement
    from testbed.migration.base import ContainerSpec

    spec, _ = load_experiment_with_source(experiment_with(
        tmp_path, users={"mu": {"services": [{"app": "detect", "env": {"MEC_DETECT_ARENA": 0}}]}}))
    env = spec.users["mu"].services[0].env
    assert env == {"MEC_DETECT_ARENA": "0"}
    placement = Placement(service="detect-mu", user="mu", app="detect", image="mec-testbed/detect", cpus=2,
                          memory_mb=2048, env=env)
    container = ContainerSpec.from_dict(placement.container())
    assert container.env == {"MEC_DETECT_ARENA": "0"}
    assert ContainerSpec.from_dict(container.to_dict()).env == container.env


def test_scenarios_named_on_the_command_line_are_the_only_ones_run_and_recorded(tmp_path):
    path = experiment_with(tmp_path, scenarios={"slow": {"duration": "20s"}, "fast": {"duration": "5s"},
                                                "far": {"duration": "30s"}})
    spec, source = load_experiment_with_source(path, scenarios=["far", "slow"])
    assert list(spec.scenarios) == ["far", "slow"] and list(source["scenarios"]) == ["far", "slow"]
    assert {name: s.duration for name, s in spec.variants().items()} == {"far": 30, "slow": 20}
    with pytest.raises(ConfigError, match=r"--scenario 'fats': .* defines far, fast, slow"):
        load_experiment_with_source(path, scenarios=["fats"])
    with pytest.raises(ConfigError, match="defines no scenarios"):
        load_experiment_with_source(experiment_with(tmp_path), scenarios=["slow"])
