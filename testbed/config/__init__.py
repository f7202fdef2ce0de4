"""The one schema for every file a researcher writes, and ``--set`` overrides.

Topology files (``topology``), experiment files (``experiment``) and app
manifests (``apps``) are validated here, before anything is created, so the
rest of the testbed trusts its inputs.  Errors name the file, the field (as a
dotted path, e.g. ``links.edge_edge.bandwidth``) and the reason.
"""

from testbed.config.apps import AppManifest, app_manifest, app_names, apps_dir, discover_apps, load_app
from testbed.config.base import (Bytes, ConfigError, Mbps, Percent, Seconds, Strict, format_validation_error,
                                 read_yaml)
from testbed.config.experiment import (CalibrationSpec, ExperimentSpec, LoadSpec, MigrationSpec, MobilitySpec,
                                       PlannerSpec, ProbeSpec, RadioSpec, ServiceUse, SweepSpec, UserSpec, derive_seed,
                                       load_experiment, load_experiment_with_source, schema_default)
from testbed.config.overrides import apply_overrides, parse_override
from testbed.config.topology import (ConnectionSpec, LinkOverride, LinkParams, NetworkSettings, NodeSpec, Point,
                                     TopologySpec, load_topology, validate_topology)

__all__ = [
    "AppManifest", "Bytes", "CalibrationSpec", "ConfigError", "LoadSpec", "ProbeSpec", "ConnectionSpec", "ExperimentSpec", "LinkOverride", "LinkParams", "Mbps",
    "MigrationSpec", "MobilitySpec", "NetworkSettings", "NodeSpec", "Percent", "PlannerSpec", "Point", "RadioSpec",
    "Seconds", "ServiceUse", "Strict", "SweepSpec", "TopologySpec", "UserSpec", "app_manifest", "app_names", "apply_overrides",
    "apps_dir", "derive_seed", "discover_apps", "format_validation_error", "load_app", "load_experiment",
    "load_experiment_with_source", "load_topology", "parse_override", "read_yaml", "schema_default",
    "validate_topology",
]
