"""pytest plugin loaded in every mutant run (``-p mutate.plugin``): deterministic hypothesis, no shrinking.

Each mutant is judged on the same examples (``derandomize``), failures are not shrunk (a kill needs one
failing example, not the smallest), and nothing is written to the example database.
"""

from __future__ import annotations

from hypothesis import Phase, settings

settings.register_profile(
    "mutate", derandomize=True, database=None, deadline=None, phases=(Phase.explicit, Phase.generate)
)
settings.load_profile("mutate")
