"""`rarenet simulate`: a SYNTHETIC osquery fleet result log plus a labels file.

For tests, benchmarks, demos and capacity planning. Everything is deterministic for a
given `SimulationSpec` (seed included); nothing touches the network.

    >>> from rarenet.baseline.simulate import SimulationSpec, simulate_to_path
    >>> simulate_to_path(SimulationSpec(hosts=20, days=2, attacks=True), "fleet.log.gz",
    ...                  "fleet.labels.jsonl")  # doctest: +SKIP
"""

from rarenet.baseline.simulate.engine import default_labels_path, simulate_to_path, write_simulation
from rarenet.baseline.simulate.labels import Label, parse_label, read_labels, write_labels
from rarenet.baseline.simulate.spec import DEFAULT_START, FORMATS, SimulationResult, SimulationSpec

__all__ = [
    "DEFAULT_START",
    "FORMATS",
    "Label",
    "SimulationResult",
    "SimulationSpec",
    "default_labels_path",
    "parse_label",
    "read_labels",
    "simulate_to_path",
    "write_labels",
    "write_simulation",
]
