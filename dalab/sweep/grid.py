"""A sweep's grid: its spec (axes + shared overrides), its points and their names.

A point is one ordinary training run. The method and λ (the GRL coefficient) only
matter to the adaptation protocol (``tst_tt``); the others (``ts_ts``, ``ts_tt``,
``tt_tt``) train source only and run once per (θ, preset, seed) whatever the method
and λ lists say.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from dalab.errors import ConfigError

PROTOCOLS = ("ts_ts", "ts_tt", "tt_tt", "tst_tt")
DOMAIN_LOSS_PROTOCOLS = frozenset({"tst_tt"})  # the only ones λ changes
AXES = ("protocols", "methods", "thetas", "lambdas", "presets", "seeds")
DEFAULT_METHOD = "dann"  # Config.method's default: left out of point names
SPEC_FILE = "sweep.json"


@dataclass(frozen=True)
class Point:
    """One run of a sweep; ``method`` and ``grl_lambda`` are None for protocols without
    adaptation."""

    protocol: str
    theta: float
    grl_lambda: float | None
    preset: str
    seed: int
    method: str | None = None

    @property
    def name(self) -> str:
        """Folder name, e.g. ``tst_tt-theta0.6-lambda0.1-quick-seed1`` or
        ``tst_tt-cdan-theta1-lambda1-quick-seed0`` (the method unless it is dann)."""
        lam = "" if self.grl_lambda is None else f"-lambda{_num(self.grl_lambda)}"
        method = "" if self.method in (None, DEFAULT_METHOD) else f"-{self.method}"
        return (f"{self.protocol}{method}-theta{_num(self.theta)}{lam}-{self.preset}"
                f"-seed{self.seed}")

    def overrides(self) -> dict:
        """The Config fields this point sets (method and λ only where they matter)."""
        out = {"protocol": self.protocol, "theta": self.theta, "seed": self.seed}
        if self.method is not None:
            out["method"] = self.method
        if self.grl_lambda is not None:
            out["grl_lambda"] = self.grl_lambda
        return out


@dataclass
class SweepSpec:
    """What a sweep computes: the grid axes and the options shared by every point.

    ``overrides`` holds every other Config field given on the command line
    (e.g. ``{"epochs": 3}``), minus the runtime fields (:data:`RUNTIME_FIELDS`).
    """

    protocols: list[str]
    thetas: list[float]
    lambdas: list[float]
    presets: list[str]
    seeds: list[int]
    overrides: dict = field(default_factory=dict)
    methods: list[str] = field(default_factory=lambda: [DEFAULT_METHOD])

    def __post_init__(self) -> None:
        for axis in AXES:
            values = getattr(self, axis)
            if not values:
                raise ConfigError(f"sweep: the {axis} list is empty")
            if len(set(values)) != len(values):
                raise ConfigError(f"sweep: {axis} has repeated values: {values}")
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad:
            raise ConfigError(f"sweep: unknown protocol {bad[0]!r}; choices: {', '.join(PROTOCOLS)}")
        for t in self.thetas:
            if not (0.0 <= t <= 1.0) or math.isnan(t):
                raise ConfigError(f"sweep: theta {t} is outside [0, 1]")
        for lam in self.lambdas:
            if not (lam >= 0.0) or math.isinf(lam):
                raise ConfigError(f"sweep: lambda {lam} must be a finite number >= 0")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict, where: str = SPEC_FILE) -> "SweepSpec":
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: not a sweep spec (a JSON object expected)")
        data = {"methods": [DEFAULT_METHOD], **data}  # sweeps made before the methods axis
        try:
            return cls(**{k: data[k] for k in (*AXES, "overrides")})
        except (KeyError, TypeError) as err:
            raise ConfigError(f"{where}: not a sweep spec ({err})") from None
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None


def parse_list(text: str, kind: type, flag: str) -> list:
    """``"0.2,0.4"`` → ``[0.2, 0.4]``; a clear error naming the flag on bad items."""
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    try:
        return [kind(s) for s in items]
    except ValueError:
        raise ConfigError(f"{flag}: expected a comma-separated list of {kind.__name__}, "
                          f"got {text!r}") from None


def expand_grid(spec: SweepSpec) -> list[Point]:
    """Every point of the grid, in a stable order, without needless λ copies.

    Points are ordered preset → seed → θ → protocol → method → λ, so an interrupted
    sweep has complete seeds and θ rows rather than one protocol only.
    """
    points = []
    for preset in spec.presets:
        for seed in spec.seeds:
            for theta in spec.thetas:
                for protocol in spec.protocols:
                    adapt = protocol in DOMAIN_LOSS_PROTOCOLS
                    points += [Point(protocol, float(theta), None if lam is None else float(lam),
                                     preset, int(seed), method)
                               for method in (spec.methods if adapt else [None])
                               for lam in (spec.lambdas if adapt else [None])]
    return points


def merge_specs(old: SweepSpec, new: SweepSpec) -> SweepSpec:
    """The union of two specs' axes (``--extend``); their overrides must be equal."""
    if old.overrides != new.overrides:
        raise ConfigError("sweep --extend: the shared options differ "
                          f"(stored {old.overrides}, given {new.overrides}); "
                          "use another --out folder")
    merged = {axis: list(dict.fromkeys([*getattr(old, axis), *getattr(new, axis)]))
              for axis in AXES}
    return SweepSpec(**merged, overrides=dict(old.overrides))


def check_spec(out: Path, spec: SweepSpec, extend: bool = False) -> SweepSpec:
    """Compare ``spec`` with ``out/sweep.json``; return the spec to run.

    A new folder takes ``spec``. The same spec resumes. A different spec is an
    error unless ``extend`` is set, which runs the union of both grids.
    """
    path = out / SPEC_FILE
    if not path.exists():
        return spec
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:  # UnicodeDecodeError, JSONDecodeError
        raise ConfigError(f"{path}: unreadable ({err})") from None
    stored = SweepSpec.from_json(data, str(path))
    if stored == spec:
        return spec
    if extend:
        return merge_specs(stored, spec)
    diffs = [f"{k}: stored {getattr(stored, k)} vs given {getattr(spec, k)}"
             for k in (*AXES, "overrides") if getattr(stored, k) != getattr(spec, k)]
    raise ConfigError(f"{path} holds a different sweep ({'; '.join(diffs)}). Rerun with "
                      "the same arguments to resume, add --extend to grow the grid, "
                      "or choose another --out")


def _num(x: float) -> str:
    """0.6 → '0.6', 1.0 → '1', 0.03 → '0.03' (short and unique for grid values)."""
    return f"{x:g}"
