"""The repair search: which ops to keep at which precision so the model meets a budget.

Every op of the diagnosis is a candidate, and so are the model's inputs and outputs where the
quantizer turns them to integers. Each candidate is measured alone at every precision its
quantizer offers (one-at-a-time sensitivity, float first, most promising first). Then:

1. **greedy** — candidates in order of measured gain, a few at a time (one per core), each
   added to the best plan so far and the plan re-measured; the best that lowers the drop is
   kept, the others go back in line and are measured again on top of it;
2. **segments** — when greedy stalls short of the budget: a contiguous run of ops from the
   start of the graph, or from its end, kept in float, its length found by bisection (as
   Polygraphy's ``debug precision`` does), on top of greedy's plan;
3. **prune** — once within the budget: each kept op put back to the mode's precision (or a
   cheaper one), largest first, while the plan stays within the budget.

Every plan is built, written and measured (never estimated), once: plans are cached by
content, measured side by side on every core, and the whole search stops at
``max_evaluations``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from quantlens.budget import within
from quantlens.errors import ConversionError, ModelLoadError
from quantlens.quantize.precision import BY_COST, FLOAT, INT16, WEIGHTS_ONLY, Rebuilder
from quantlens.results import BOUNDARY_KINDS, SOURCES, Placement, SearchStep, SourceCheck

#: Measured trials by default: a sensitivity pass over a few dozen ops at each precision,
#: then the search.
DEFAULT_MAX_EVALUATIONS = 200
#: A precision is chosen over a costlier one when it buys this share of the costlier one's gain.
CHEAP_ENOUGH = 0.8
#: A step is kept only when it lowers the drop by at least this share (smaller moves are
#: within the noise of the data and cost size for nothing).
MIN_GAIN = 0.01
#: Candidates whose cheaper precisions are measured alone too: the most helpful in float.
CHEAPER_CANDIDATES = 8
#: Op types measured kept in float wholesale, as sources of error.
TYPE_CHECKS = 4
#: The share of the evaluations left that one-at-a-time sensitivity may use.
SENSITIVITY_SHARE = 0.5

#: Precisions that keep an op's output wider than int8.
WIDE_OUTPUT = (FLOAT, INT16)

Measure = Callable[[Path], "tuple[float, tuple[float, float] | None]"]


@dataclass(frozen=True)
class Unit:
    """A candidate: an op (with the ops reading its output, which stay float with it so its
    output tensor stays float) or a model input/output."""

    key: str  # the name the quantizer knows it by
    index: int  # position in the graph; inputs first, outputs last
    op_type: str
    readers: tuple[str, ...] = ()
    error_added_db: float = 0.0
    weight_sqnr_db: float | None = None

    @property
    def is_boundary(self) -> bool:
        return self.op_type in BOUNDARY_KINDS


@dataclass(frozen=True)
class Trial:
    """A measured plan."""

    plan: tuple[Placement, ...]
    path: Path
    metric: float
    drop: float
    size_bytes: int
    interval: tuple[float, float] | None = None
    digest: str = ""  # of the model's bytes: plans that build the same model are one
    refused: str = ""  # why the quantizer or the runtime refused the plan ("" if it ran)


def plan_of(state: dict[str, str], units: dict[str, Unit]) -> tuple[Placement, ...]:
    """The placements a search state (unit key -> precision) stands for: a unit whose output
    is kept wider (float, int16) brings its readers, or they would read it back in int8;
    where two units name one op, the costlier precision wins."""
    out: dict[str, str] = {}
    rank = {p: i for i, p in enumerate(BY_COST)}
    for key, precision in state.items():
        names = (key, *units[key].readers) if precision in WIDE_OUTPUT else (key,)
        for name in names:
            if name not in out or rank[precision] > rank[out[name]]:
                out[name] = precision
    return tuple(Placement(n, out[n]) for n in sorted(out))


class Budget(Exception):
    """The search used every evaluation it was allowed."""


class Evaluator:
    """Builds, writes and measures plans: each plan once, several at a time; a plan that
    builds a model already measured (its ops were not quantized by the mode anyway) takes
    that model's measurement. ``max_evaluations`` counts the models measured."""

    def __init__(
        self, rebuild: Rebuilder, measure: Measure, drop: Callable[[float], float], work: Path,
        suffix: str, max_evaluations: int, workers: int | None = None,
    ) -> None:  # fmt: skip
        self._rebuild, self._measure, self._drop = rebuild, measure, drop
        self._work, self._suffix = work, suffix
        self.max_evaluations = max_evaluations
        self.workers = workers or max(1, os.cpu_count() or 1)
        self._cache: dict[tuple[Placement, ...], Trial] = {}
        self._models: dict[str, Trial] = {}  # by digest
        self._lock = threading.Lock()
        self.settings: dict[tuple[Placement, ...], dict[str, object]] = {}
        self.refused: dict[tuple[Placement, ...], str] = {}

    @property
    def evaluations(self) -> int:
        """Models measured, and plans refused (they took their time too)."""
        return len(self._models) + len(self.refused)

    @property
    def remaining(self) -> int:
        return self.max_evaluations - self.evaluations

    def _refused(self, plan: tuple[Placement, ...], exc: Exception) -> Trial:
        """A plan the quantizer could not build, or whose model the runtime refused (an op
        without that precision's kernel): never chosen, and the search goes on."""
        with self._lock:
            self.refused[plan] = str(exc)
        return Trial(plan, Path(), math.nan, math.inf, 0, refused=str(exc))

    def _one(self, plan: tuple[Placement, ...], number: int) -> Trial:
        try:
            data, settings = self._rebuild.build({p.name: p.precision for p in plan})
        except ConversionError as exc:
            return self._refused(plan, exc)
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        with self._lock:
            self.settings[plan] = settings
            known = self._models.get(digest)
        if known is not None:
            return dataclasses.replace(known, plan=plan)
        path = self._work / f"trial{number}{self._suffix}"
        path.write_bytes(data)
        try:
            metric, interval = self._measure(path)
        except ModelLoadError as exc:
            return self._refused(plan, exc)
        trial = Trial(plan, path, metric, self._drop(metric), len(data), interval, digest)
        with self._lock:
            self._models.setdefault(digest, trial)
        return trial

    def many(self, plans: Sequence[tuple[Placement, ...]]) -> list[Trial]:
        """Every plan measured (from the cache where it was before).

        Raises:
            Budget: measuring them all would pass ``max_evaluations``; none is measured.
        """
        new = list(dict.fromkeys(p for p in plans if p not in self._cache))
        if len(new) > self.remaining:  # at most: some may build models already measured
            raise Budget
        start = len(self._cache)
        if len(new) == 1 or self.workers == 1:
            trials = [self._one(p, start + i) for i, p in enumerate(new)]
        else:
            with ThreadPoolExecutor(self.workers) as pool:
                trials = list(pool.map(self._one, new, range(start, start + len(new))))
        self._cache.update(zip(new, trials, strict=True))
        return [self._cache[p] for p in plans]

    def one(self, plan: tuple[Placement, ...]) -> Trial:
        return self.many([plan])[0]


@dataclass
class SearchLog:
    """What the search measured, for the report."""

    base: Trial
    alone: dict[tuple[str, str], Trial] = field(default_factory=dict)  # (unit, precision)
    sources: list[SourceCheck] = field(default_factory=list)
    steps: list[tuple[SearchStep, Trial]] = field(default_factory=list)
    best: Trial | None = None  # the last accepted plan
    stopped: str = ""  # why the search ended early ("" when it ran its course)
    unchanged: list[str] = field(default_factory=list)  # candidates the mode leaves float

    def step(self, trial: Trial, how: str, accepted: bool) -> SearchStep:
        st = SearchStep(len(self.steps) + 1, trial.plan, str(trial.path), trial.metric, trial.drop,
                        trial.size_bytes, accepted=accepted, how=how,
                        interval=trial.interval)  # fmt: skip
        self.steps.append((st, trial))
        return st


class Search:
    """One search over ``units`` (see the module's docstring)."""

    def __init__(self, units: Sequence[Unit], evaluator: Evaluator, max_drop: float,
                 precisions: Sequence[str]) -> None:  # fmt: skip
        self.units = {u.key: u for u in units}
        self.order = sorted(units, key=lambda u: u.index)
        self.ev, self.max_drop = evaluator, max_drop
        self.precisions = [p for p in BY_COST if p in precisions]
        self.rank: dict[str, int] = {}

    @property
    def reserve(self) -> int:
        """Evaluations kept for the segments: two bisections over the graph, and the whole."""
        return 2 * math.ceil(math.log2(len(self.order) + 1)) + 2

    def allowed(self, key: str) -> list[str]:
        """The precisions a candidate can take: a model input or output is float or not."""
        if self.units[key].is_boundary:
            return [FLOAT]
        return self.precisions

    def plan(self, state: dict[str, str]) -> tuple[Placement, ...]:
        return plan_of(state, self.units)

    def met(self, trial: Trial) -> bool:
        return within(trial.drop, self.max_drop)

    # -- the passes ---------------------------------------------------------------------

    def run(self, priority: Sequence[Unit], status: Callable[[str], None] | None) -> SearchLog:
        """Measure the mode as it is, the error sources, each candidate alone, then search."""
        log = SearchLog(self.ev.one(()))
        if log.base.refused:  # the mode itself cannot be built: nothing to search from
            raise ConversionError(log.base.refused)
        log.best, state = log.base, {}
        self.rank = {u.key: i for i, u in enumerate(priority)}
        say = status or (lambda _: None)
        try:
            say("measuring each source of error alone…")
            log.sources = self.sources(log.base)
            say(f"measuring each of {len(priority)} candidates alone…")
            self.sensitivity(priority, log)
            if not self.met(log.base):
                say("greedy search on measured gains…")
                state = self.greedy(log)
            if not self.met(log.best):
                say("bisecting contiguous segments of the graph…")
                state = self.segments(log, state)
            if self.met(log.best):
                say("putting back what the budget does not need…")
                state = self.prune(log, state)
        except Budget:
            log.stopped = f"it used all {self.ev.max_evaluations} evaluations"
        return log

    def sources(self, base: Trial) -> list[SourceCheck]:
        """Each error source alone, where the quantizer can separate them: the weights (every
        op's activations in float), 16-bit activations, the int8 inputs/outputs (every op in
        float), and each op type kept in float."""
        everything = {u.key: FLOAT for u in self.order}
        ops = [u for u in self.order if not u.is_boundary]
        io = [u for u in self.order if u.is_boundary]
        checks: list[tuple[str, str, dict[str, str]]] = []
        if WEIGHTS_ONLY in self.precisions:
            checks.append((SOURCES[0], "only the weights int8: every op's activations float, "
                           "int8 weights dequantized before it",
                           {**{u.key: WEIGHTS_ONLY for u in ops},
                            **{u.key: FLOAT for u in io}}))  # fmt: skip
        if INT16 in self.precisions:
            checks.append((SOURCES[1], "every activation int16 instead of int8 (weights "
                           "int8)", {u.key: INT16 for u in ops}))  # fmt: skip
        if io:
            checks.append((SOURCES[2], "every op in float: only the model's inputs "
                           "and outputs int8", {u.key: FLOAT for u in ops}))  # fmt: skip
        for t in self.suspect_types(ops):
            checks.append((t, f"every {t} in float",
                           {u.key: FLOAT for u in ops if u.op_type == t}))  # fmt: skip
        checks.append((SOURCES[3], "every op, input and output in float", everything))
        trials = self.ev.many([self.plan(state) for _, _, state in checks])
        return [SourceCheck(name, text, t.metric, t.drop, t.size_bytes)
                for (name, text, _), t in zip(checks, trials, strict=True)]  # fmt: skip

    @staticmethod
    def suspect_types(ops: Sequence[Unit]) -> list[str]:
        """The op types worth keeping in float wholesale: those whose ops add ≥ 1 dB of error
        in all, the most first, at most TYPE_CHECKS (none when the model has one type)."""
        added: dict[str, float] = {}
        for u in ops:
            added[u.op_type] = added.get(u.op_type, 0.0) + max(u.error_added_db, 0.0)
        if len(added) < 2:
            return []
        ranked = sorted((t for t, db in added.items() if db >= 1.0), key=lambda t: -added[t])
        return ranked[:TYPE_CHECKS]

    def sensitivity(self, priority: Sequence[Unit], log: SearchLog) -> None:
        """Each candidate alone in float (most promising first), then at each cheaper
        precision for the candidates whose float gain is real."""
        # at most a share of what is left, the most suspect first: the search itself needs
        # the rest, and the segments reach every op that was not measured alone
        allowed = max(1, int(self.ev.remaining * SENSITIVITY_SHARE))
        priority = list(priority)[:allowed]
        plans = [self.plan({u.key: FLOAT}) for u in priority]
        for lo in range(0, len(plans), 8 * self.ev.workers):
            chunk = list(zip(priority[lo:lo + 8 * self.ev.workers],
                             plans[lo:lo + 8 * self.ev.workers], strict=False))  # fmt: skip
            trials = self.ev.many([p for _, p in chunk])
            for (u, _), t in zip(chunk, trials, strict=True):
                if t.digest == log.base.digest:  # the mode leaves it float already
                    log.unchanged.append(u.key)
                else:
                    log.alone[(u.key, FLOAT)] = t
        helping = sorted((u for u in priority if self.helps(log, self.gain(log, u.key, FLOAT))),
                         key=lambda u: -self.gain(log, u.key, FLOAT))  # fmt: skip
        cheaper = [(u, p) for u in helping[:CHEAPER_CANDIDATES] for p in self.allowed(u.key)
                   if p != FLOAT]  # fmt: skip
        if cheaper:
            cheaper = cheaper[: max(0, self.ev.remaining - self.reserve)]
            trials = self.ev.many([self.plan({u.key: p}) for u, p in cheaper])
            for (u, p), t in zip(cheaper, trials, strict=True):
                log.alone[(u.key, p)] = t

    @staticmethod
    def helps(log: SearchLog, gain: float) -> bool:
        return gain >= MIN_GAIN * log.base.drop and gain > 0

    def gain(self, log: SearchLog, key: str, precision: str) -> float:
        t = log.alone.get((key, precision))
        return -math.inf if t is None else log.base.drop - t.drop

    def choice(self, log: SearchLog, key: str) -> str:
        """The cheapest precision that buys most of the best precision's gain alone."""
        allowed = self.allowed(key)
        best = max(self.gain(log, key, p) for p in allowed)
        return next(p for p in allowed if self.gain(log, key, p) >= CHEAP_ENOUGH * best)

    def greedy(self, log: SearchLog) -> dict[str, str]:
        state: dict[str, str] = {}
        assert log.best is not None
        gains = {k: max(self.gain(log, k, p) for p in self.allowed(k)) for k in self.units}
        pending = sorted(
            (k for k in self.units if self.helps(log, gains[k])),
            # equal gains: the more suspect op first (an op and its reader fix the same error)
            key=lambda k: (-gains[k], self.rank.get(k, len(self.rank))),
        )
        while pending and not self.met(log.best) and self.ev.remaining > self.reserve:
            batch, pending = pending[: self.ev.workers], pending[self.ev.workers :]
            trials = self.ev.many([self.plan({**state, k: self.choice(log, k)}) for k in batch])
            better = [(t.drop, t.size_bytes, i) for i, t in enumerate(trials)
                      if t.drop < log.best.drop * (1 - MIN_GAIN)]  # fmt: skip
            win = min(better)[2] if better else -1
            for i, t in enumerate(trials):
                log.step(t, "greedy", accepted=i == win)
            if win >= 0:
                state = {**state, batch[win]: self.choice(log, batch[win])}
                log.best = trials[win]
                # the others that helped are measured again on top of the new plan
                pending = [batch[i] for _, _, i in sorted(better) if i != win] + pending
        return state

    def segments(self, log: SearchLog, state: dict[str, str]) -> dict[str, str]:
        """The shortest run of ops from either end of the graph that, kept in float on top
        of ``state``, meets the budget (bisection; the drop is taken to fall as the run
        grows). None found: ``state`` unchanged."""
        assert log.best is not None
        n = len(self.order)
        whole = self.ev.one(self.plan({**state, **{u.key: FLOAT for u in self.order}}))
        if not self.met(whole):
            return state
        found: list[tuple[int, Trial, dict[str, str]]] = []
        for forward in (True, False):
            run = self.order if forward else self.order[::-1]

            def plan(k: int, run: list[Unit] = run) -> dict[str, str]:
                return {**state, **{u.key: FLOAT for u in run[:k]}}

            lo, hi, best = 0, n, whole  # invariant: run[:hi] meets, run[:lo] does not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                t = self.ev.one(self.plan(plan(mid)))
                log.step(t, "segment", accepted=False)
                if self.met(t):
                    hi, best = mid, t
                else:
                    lo = mid
            found.append((best.size_bytes, best, plan(hi)))
        _, trial, chosen = min(found, key=lambda f: f[0])
        log.step(trial, "segment", accepted=True)
        log.best = trial
        return chosen

    def prune(self, log: SearchLog, state: dict[str, str]) -> dict[str, str]:
        """Put each kept unit back (or to a cheaper precision), the costliest in size first,
        while the plan stays within the budget."""
        assert log.best is not None

        def cost(key: str) -> int:
            t = log.alone.get((key, state[key]))
            return t.size_bytes - log.base.size_bytes if t else 0

        for key in sorted(state, key=lambda k: -cost(k)):
            current = state[key]
            allowed = self.allowed(key)
            options = allowed[: allowed.index(current)]
            for lighter in [None, *options]:
                trial_state = {k: v for k, v in state.items() if k != key}
                if lighter is not None:
                    trial_state[key] = lighter
                if self.plan(trial_state) == log.best.plan:
                    continue  # its ops are kept by other candidates too
                t = self.ev.one(self.plan(trial_state))
                ok = self.met(t) and t.size_bytes <= log.best.size_bytes
                log.step(t, "prune", accepted=ok)
                if ok:
                    state, log.best = trial_state, t
                    break
        return state
