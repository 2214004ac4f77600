"""The registered benchmarks (named task lists) and user pair files.

A benchmark is a list of tasks, each a labelled (source spec, target spec) pair, and
how a task is scored: ``accuracy`` (the share of target test images right) or
``class-mean`` (the mean of per-class accuracies, as VisDA-2017 reports it).
``dalab benchmark NAME`` takes a name of :data:`BENCHMARKS` or a pair file: one task a
line, ``SOURCE > TARGET`` (two domain specs), ``#`` starts a comment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from itertools import permutations
from pathlib import Path

from dalab.data.domains import parse_spec
from dalab.errors import ConfigError
from dalab.sweep.published import (
    DOMAINNET_TASKS, OFFICE31_TASKS, OFFICEHOME_TASKS, PUBLISHED, Published,
)


@dataclass(frozen=True)
class Task:
    """One column of a benchmark table."""

    label: str  # e.g. "A→W"
    source: str  # domain spec
    target: str

    @property
    def folder(self) -> str:
        """The task's folder name: the label in file-name-safe characters (``A-W``)."""
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.label.replace("→", "-")).strip("-")


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    tasks: tuple[Task, ...]
    metric: str = "accuracy"  # accuracy | class-mean
    note: str = ""

    @property
    def published(self) -> list[Published]:
        return PUBLISHED.get(self.name, [])

    @property
    def preset(self) -> str:
        """The default preset: ``quick`` when every domain is digits, else
        ``office-cpu``."""
        kinds = {s.split(":")[0] for t in self.tasks for s in (t.source, t.target)}
        return "quick" if kinds <= DIGIT_KINDS else "office-cpu"


def _pairs(kind: str, letters: dict[str, str], labels: list[str]) -> tuple[Task, ...]:
    """Tasks of ``kind:DOMAIN`` specs from labels such as ``A→W`` (letters -> domains)."""
    tasks = []
    for label in labels:
        s, t = label.split("→")
        tasks.append(Task(label, f"{kind}:{letters[s]}", f"{kind}:{letters[t]}"))
    return tuple(tasks)


DIGIT_KINDS = {"mnist", "mnistm", "mnistm-official", "usps", "svhn", "digits", "syndigits"}
OFFICE31 = {"A": "amazon", "D": "dslr", "W": "webcam"}
OFFICEHOME = {"Ar": "Art", "Cl": "Clipart", "Pr": "Product", "Rw": "Real_World"}
DOMAINNET = {"c": "clipart", "i": "infograph", "p": "painting", "q": "quickdraw",
             "r": "real", "s": "sketch"}

BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("office31", "Office-31", _pairs("office31", OFFICE31, OFFICE31_TASKS)),
    Benchmark("officehome", "Office-Home", _pairs("officehome", OFFICEHOME,
                                                  OFFICEHOME_TASKS)),
    Benchmark("visda2017", "VisDA-2017",
              (Task("train→validation", "visda2017:train", "visda2017:validation"),),
              metric="class-mean", note="columns are the target's classes; the mean over "
              "classes is the figure VisDA reports"),
    Benchmark("domainnet", "DomainNet (4 domains)", _pairs("domainnet", DOMAINNET,
                                                           DOMAINNET_TASKS),
              note="the 12 tasks among clipart, painting, real and sketch, as tllib reports"),
    Benchmark("domainnet-all", "DomainNet (6 domains)", _pairs(
        "domainnet", DOMAINNET, [f"{s}→{t}" for s, t in permutations(DOMAINNET, 2)]),
              note="all 30 tasks among the six domains"),
    Benchmark("digits", "Digits", (Task("M→U", "mnist", "usps"), Task("U→M", "usps", "mnist"),
                                   Task("M→MM", "mnist", "mnistm"),
                                   Task("S→M", "svhn", "mnist")),
              note="held-out test splits; SVHN is downloaded on first use (about 245 MB)"),
)}


def load_pairs(path: str | Path) -> Benchmark:
    """A benchmark from a pair file: ``SOURCE > TARGET`` a line, ``#`` comments.

    Raises
    ------
    ConfigError
        Naming the file and line of a bad or repeated pair, or an unreadable file.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the pair file ({err})") from None
    tasks: list[Task] = []
    for no, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        source, sep, target = (s.strip() for s in text.partition(">"))
        if not sep or not source or not target or ">" in target:
            raise ConfigError(f"{path}, line {no}: expected 'SOURCE > TARGET' (two domain "
                              f"specs), got {line.strip()!r}")
        try:
            source, target = (parse_spec(s)[1] for s in (source, target))
        except ConfigError as err:
            raise ConfigError(f"{path}, line {no}: {err}") from None
        task = Task(f"{_short(source)}→{_short(target)}", source, target)
        if any(t.folder == task.folder for t in tasks):
            raise ConfigError(f"{path}, line {no}: the pair {task.label} is already listed")
        tasks.append(task)
    if not tasks:
        raise ConfigError(f"{path}: no 'SOURCE > TARGET' pairs in the file")
    return Benchmark(path.stem, f"pairs of {path.name}", tuple(tasks))


def find_benchmark(name: str) -> Benchmark:
    """A registered benchmark, or the pair file ``name``."""
    if name in BENCHMARKS:
        return BENCHMARKS[name]
    if Path(name).is_file():
        return load_pairs(name)
    raise ConfigError(f"benchmark: unknown name {name!r} and no such pair file; choose one "
                      f"of {', '.join(BENCHMARKS)} or give a file of 'SOURCE > TARGET' lines")


def select_tasks(bench: Benchmark, wanted: list[str]) -> Benchmark:
    """``bench`` with only the tasks ``wanted``, named by label (``A→W``, or ``A->W``)
    or folder (``A-W``), in the benchmark's order; the table grows by the others later."""
    by_name = {n: t for t in bench.tasks
               for n in (t.label, t.label.replace("→", "->"), t.folder)}
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        raise ConfigError(f"--tasks: {', '.join(map(repr, unknown))} not among {bench.name}'s "
                          f"tasks: {', '.join(t.label for t in bench.tasks)}")
    chosen = {by_name[w] for w in wanted}
    return replace(bench, tasks=tuple(t for t in bench.tasks if t in chosen))


def _short(spec: str) -> str:
    """A short name of a domain spec for a column label: the kind and sub-domain, or
    the last folder of a path."""
    kind, _, rest = spec.partition(":")
    if kind == "folder":
        return Path(rest).name or rest
    sub = rest.split(":")[0] if rest and "=" not in rest.split(":")[0] else ""
    return f"{kind}:{sub}" if sub and "/" not in sub else kind
