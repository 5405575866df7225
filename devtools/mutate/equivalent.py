"""Surviving mutants no test can kill, by module and mutation key (``operators.Mutation.key``), with why.

A key here is left out of the score; ``python -m mutate`` still lists it, with its reason.
"""

from __future__ import annotations

EQUIVALENT: dict[str, dict[str, str]] = {
    "layers/cni_metrics/cni_metrics/core/aggregate.py": {},
    "layers/cni_metrics/cni_metrics/core/state_codec.py": {
        "dump_state: False -> True #1": "allow_nan=False never acts: every float written went through "
        "_encoded_number, which refuses NaN and ±Inf; only a restart count that is not an int could reach it",
        "_pod: True -> False #1": "zip(..., strict=True) never meets lists of different lengths: the line "
        "before refuses a counter list whose length is not that of 'f'",
    },
}
