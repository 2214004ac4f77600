"""Divergence and collapse: two ways a run goes wrong without crashing.

*Divergence*: a loss becomes NaN or infinite. The loop sums each figure over the
epoch as device tensors and reads the sums once at the end of the epoch; a single
non-finite step makes the sum non-finite, so :func:`check_finite` sees it without
waiting on the device at every step. The run stops with :class:`DivergenceError`; the
previous epoch's checkpoint stays, so the run can go on with other settings.

*Collapse*: the labelled training accuracy falls back to chance after having been
high, or the domain classifier is stuck at chance (0.5) while the class loss sits at
``ln(classes)`` (the classifier outputs uniform guesses). :func:`collapse_warning`
describes it; the loop records the warning and, with ``on_collapse=stop``, stops.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from dalab.errors import DalabError

HIGH = 0.5  # "had been high": at least halfway from chance to perfect accuracy
NEAR_CHANCE = 0.1  # "near chance": within a tenth of the way from chance to perfect
LOSS_TOLERANCE = 0.05  # class loss within 5 % of ln(classes)
DOMAIN_TOLERANCE = 0.05  # domain accuracy within 0.05 of 0.5


class DivergenceError(DalabError):
    """A training loss became NaN or infinite; the last good checkpoint is kept."""


def check_finite(row: dict, keys, out: Path | None) -> None:
    """Raise :class:`DivergenceError` when one of the epoch's summed figures is not finite."""
    bad = {k: row[k] for k in keys if not math.isfinite(row[k])}
    if not bad:
        return
    figures = ", ".join(f"{k}={v}" for k, v in bad.items())
    where = "nothing was saved (no run folder)"
    if out is not None:
        where = (f"the last good checkpoint (epoch {row['epoch'] - 1}) is kept in "
                 f"{Path(out) / 'checkpoints'}" if row["epoch"] > 1 else
                 f"no epoch finished, so {out} holds no checkpoint")
        where += ("; to go on with other settings, rerun the same command with e.g. a "
                  "lower --lr and --resume-changed")
    raise DivergenceError(f"training diverged in epoch {row['epoch']}: {figures} "
                          f"(non-finite loss); {where}")


def collapse_warning(rows: list[dict], acc_key: str, num_classes: int) -> str | None:
    """A description of a collapse in the last row of ``rows``, or None."""
    row, chance = rows[-1], 1.0 / num_classes
    acc = row.get(acc_key)
    best = max((r.get(acc_key, 0.0) for r in rows[:-1]), default=0.0)
    if acc is not None and best >= chance + HIGH * (1 - chance) and (
            acc <= chance + NEAR_CHANCE * (1 - chance)):
        return (f"collapse in epoch {row['epoch']}: {acc_key} fell to {acc:.3f} "
                f"(it was {best:.3f}; chance is {chance:.3f})")
    loss, domain = row.get("class_loss"), row.get("domain_acc")
    if (len(rows) > 1 and loss is not None and domain is not None
            and abs(loss - math.log(num_classes)) <= LOSS_TOLERANCE * math.log(num_classes)
            and abs(domain - 0.5) <= DOMAIN_TOLERANCE):
        return (f"collapse in epoch {row['epoch']}: class_loss {loss:.3f} is at "
                f"ln({num_classes}) = {math.log(num_classes):.3f} and domain_acc "
                f"{domain:.3f} at chance: the classifier guesses uniformly")
    return None


def note_collapse(rows: list[dict], warns: list[str], acc_key: str, num_classes: int,
                  on_collapse: str, log: Callable[[str], None]) -> bool:
    """Add a collapse in the last row to ``warns`` (once a run) and log it; return True
    when the run is to stop there (``on_collapse == "stop"``)."""
    found = collapse_warning(rows, acc_key, num_classes)
    if found is None or any(w.startswith("collapse") for w in warns):
        return False
    stop = on_collapse == "stop"
    warns.append(found + ("; training stopped (on_collapse=stop)" if stop else ""))
    log(f"WARNING: {warns[-1]}")
    return stop
