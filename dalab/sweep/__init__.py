"""Sweeps over θ, λ, protocol, preset and seed: one ordinary run folder per point.

>>> from dalab.sweep import SweepSpec, expand_grid, run_sweep
>>> spec = SweepSpec(protocols=["ts_tt", "tst_tt"], thetas=[0.5, 1.0], lambdas=[0.1, 1.0],
...                  presets=["quick"], seeds=[0], overrides={"epochs": 1})
>>> [p.name for p in expand_grid(spec)][:3]
['ts_tt-theta0.5-quick-seed0', 'tst_tt-theta0.5-lambda0.1-quick-seed0', 'tst_tt-theta0.5-lambda1-quick-seed0']
"""

from dalab.sweep.grid import (
    DOMAIN_LOSS_PROTOCOLS, Point, SweepSpec, check_spec, expand_grid, parse_list,
)
from dalab.sweep.runner import Outcome, run_sweep
from dalab.sweep.comparison import compare, write_compare

__all__ = ["Point", "SweepSpec", "expand_grid", "check_spec", "parse_list", "run_sweep",
           "Outcome", "DOMAIN_LOSS_PROTOCOLS", "compare", "write_compare"]
