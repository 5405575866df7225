"""Surviving mutants no test can kill, by module and mutation key (``operators.Mutation.key``), with why.

A key here is left out of the score; ``python -m mutate`` still lists it, with its reason.
"""

from __future__ import annotations

EQUIVALENT: dict[str, dict[str, str]] = {
    "layers/cni_metrics/cni_metrics/core/aggregate.py": {},
    "layers/cni_metrics/cni_metrics/core/node.py": {
        "SampleLike.name: delete statement #1": "a Protocol's method stub: its body never runs",
        "SampleLike.labels: delete statement #1": "a Protocol's method stub: its body never runs",
        "SampleLike.value: delete statement #1": "a Protocol's method stub: its body never runs",
        "ValueRangeError.__init__: delete statement #1": "only read_node_metrics catches it, and it uses "
        "the error's name and reason attributes, never str() of it",
        "_reduce_scan: 0.0 -> 1.0 #2": "max()'s default applies to a payload with no samples, and 0 and 1 "
        "are both within ±2^360",
    },
    "layers/cni_metrics/cni_metrics/core/metric_sets.py": {
        "check_names: 1 -> 2 #1": "get_close_matches(n=2) only adds a second match after the best one, and "
        "only the best one (close[0]) is shown",
    },
    "layers/cni_metrics/cni_metrics/core/state_codec.py": {
        "dump_state: False -> True #1": "allow_nan=False never acts: every float written went through "
        "_encoded_number, which refuses NaN and ±Inf; only a restart count that is not an int could reach it",
        "_pod: True -> False #1": "zip(..., strict=True) never meets lists of different lengths: the line "
        "before refuses a counter list whose length is not that of 'f'",
    },
}
