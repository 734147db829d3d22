"""The repair search's passes on a model whose error is a known function of the plan: each
planted cause is found, with the cheapest precision that fixes it, in no more evaluations
than allowed; and the statistics it reports equal independent ones."""

from __future__ import annotations

import contextlib
import json
import math
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from scipy.stats import binomtest

from quantlens.diagnose.search import Budget, Evaluator, Search, Unit, plan_of
from quantlens.diagnose.suggest import wilson_interval
from quantlens.quantize.precision import FLOAT, INT16, WEIGHTS_ONLY, Plan, Rebuilder

ALL = (FLOAT, INT16, WEIGHTS_ONLY)
#: What each precision costs in bytes over int8, per op (a float op carries float weights).
COST = {FLOAT: 300, INT16: 20, WEIGHTS_ONLY: 10}
BASE_SIZE = 1000


def _units(n: int, io: bool = False) -> list[Unit]:
    ops = [Unit(f"op{i}", i, "CONV_2D", readers=(f"op{i + 1}",) if i + 1 < n else ())
           for i in range(n)]  # fmt: skip
    if io:
        ops += [Unit("INPUT x", -1, "INPUT"), Unit("OUTPUT y", n, "OUTPUT")]
    return ops


def _fake(drop_of: Callable[[dict[str, str]], float], precisions=ALL) -> Rebuilder:
    """A quantizer whose 'model' is its plan as JSON, padded to the plan's size; the
    measurement reads the drop back from the plan."""

    def build(plan: Plan) -> tuple[bytes, dict]:
        size = BASE_SIZE + sum(COST[p] for p in plan.values())
        text = json.dumps(dict(sorted(plan.items()))).encode()
        return text + b" " * (size - len(text)), {"plan": dict(plan)}

    rebuilder = Rebuilder("int8", tuple(precisions), build)
    rebuilder.drop_of = drop_of  # type: ignore[attr-defined]
    return rebuilder


def _search(
    tmp_path: Path, units: list[Unit], rebuilder: Rebuilder, max_drop: float,
    max_evaluations: int = 500, workers: int = 2,
) -> tuple[Search, Evaluator, list]:  # fmt: skip
    measured: list[dict[str, str]] = []
    lock = threading.Lock()

    def measure(path: Path) -> tuple[float, None]:
        plan = json.loads(path.read_bytes().decode().strip())
        with lock:
            measured.append(plan)
        drop = rebuilder.drop_of(plan)  # type: ignore[attr-defined]
        return -20 * math.log10(drop) if drop > 0 else math.inf, None

    def drop(sqnr: float) -> float:
        return 10 ** (-sqnr / 20)

    ev = Evaluator(rebuilder, measure, drop, tmp_path, ".bin", max_evaluations, workers)
    return Search(units, ev, max_drop, rebuilder.precisions), ev, measured


def test_a_bad_weight_is_kept_in_float_not_at_a_precision_that_keeps_int8_weights(tmp_path):
    # op3's int8 weights carry the error: only float (float weights) fixes it
    def drop_of(plan: dict[str, str]) -> float:
        return 0.01 if plan.get("op3") == FLOAT else 0.2

    units = _units(8)
    units[3] = Unit("op3", 3, "CONV_2D", ("op4",), error_added_db=20.0)  # as diagnose ranks it
    priority = [units[3], *units[:3], *units[4:]]
    search, _ev, _ = _search(tmp_path, units, _fake(drop_of), max_drop=0.02)
    log = search.run(priority, None)
    assert log.best is not None and log.best.drop == pytest.approx(0.01)
    chosen = dict((p.name, p.precision) for p in log.best.plan)
    assert chosen["op3"] == FLOAT
    # measured alone at the cheaper precisions too, which did not help
    assert log.alone[("op3", INT16)].drop == pytest.approx(0.2)
    assert log.alone[("op3", WEIGHTS_ONLY)].drop == pytest.approx(0.2)
    # after pruning nothing else stays (op4 read op3's output and went float with it)
    assert set(chosen) <= {"op3", "op4"}


def test_a_wide_activation_takes_int16_not_float(tmp_path):
    # op2's int8 output is the problem: int16 or float activations fix it; int16 is cheaper
    def drop_of(plan: dict[str, str]) -> float:
        return (
            0.005
            if plan.get("op2") in (FLOAT, INT16) and plan.get("op3") in (FLOAT, INT16)
            else 0.3
        )

    units = _units(6)
    search, _, _ = _search(tmp_path, units, _fake(drop_of), max_drop=0.01)
    log = search.run(units, None)
    chosen = {p.name: p.precision for p in log.best.plan}
    assert chosen == {"op2": INT16, "op3": INT16}  # the op and its reader, at int16


def test_error_spread_over_a_run_of_layers_is_found_by_bisection(tmp_path):
    # no op helps alone; the first 5 in float together fix it; any prefix shorter does not
    n = 12

    def drop_of(plan: dict[str, str]) -> float:
        prefix = 0
        while plan.get(f"op{prefix}") == FLOAT:
            prefix += 1
        return 0.01 if prefix >= 5 else 0.1

    units = _units(n)
    search, _ev, _ = _search(tmp_path, units, _fake(drop_of), max_drop=0.02)
    log = search.run(units, None)
    kinds = [st.how for st, _ in log.steps]
    assert "greedy" not in kinds and "segment" in kinds  # greedy had nothing to try
    # a 4-op prefix is the planted fix (op4 goes float as op3's reader); pruning keeps it
    chosen = {p.name for p in log.best.plan}
    assert chosen == {"op0", "op1", "op2", "op3", "op4"}
    # bisection: about log2(n) evaluations per direction, not n
    assert sum(1 for k in kinds if k == "segment") <= 2 * math.ceil(math.log2(n + 1)) + 1


def test_inputs_and_outputs_are_candidates_and_only_float(tmp_path):
    def drop_of(plan: dict[str, str]) -> float:
        return 0.001 if plan.get("INPUT x") == FLOAT else 0.05

    units = _units(4, io=True)
    search, _, _ = _search(tmp_path, units, _fake(drop_of), max_drop=0.002)
    log = search.run(units, None)
    assert {p.name: p.precision for p in log.best.plan} == {"INPUT x": FLOAT}
    assert ("INPUT x", INT16) not in log.alone  # a boundary is float or integer


def test_the_search_stops_at_max_evaluations_and_keeps_what_it_found(tmp_path):
    def drop_of(plan: dict[str, str]) -> float:
        return 0.2 - 0.01 * sum(p == FLOAT for p in plan.values())

    units = _units(20)
    search, ev, measured = _search(tmp_path, units, _fake(drop_of), max_drop=0.0001,
                                   max_evaluations=15)  # fmt: skip
    log = search.run(units, None)
    assert "15 evaluations" in log.stopped
    assert ev.evaluations <= 15 and len(measured) == ev.evaluations
    with pytest.raises(Budget):
        ev.many([plan_of({u.key: FLOAT for u in units[:k]}, search.units) for k in range(1, 20)])


def test_plans_that_build_the_same_model_are_measured_once(tmp_path):
    # a quantizer that ignores op1 (leaves it float whatever the plan) builds one model for
    # {} and {op1: float}
    def build(plan: Plan) -> tuple[bytes, dict]:
        kept = {k: v for k, v in plan.items() if k != "op1"}
        return json.dumps(kept).encode() + b" " * 100, {}

    rebuilder = Rebuilder("int8", ALL, build)
    rebuilder.drop_of = lambda plan: 0.1  # type: ignore[attr-defined]
    units = [Unit("op1", 0, "LEAKY_RELU"), Unit("op2", 1, "CONV_2D")]
    search, _ev, measured = _search(tmp_path, units, rebuilder, max_drop=0.01)
    log = search.run(units, None)
    assert "op1" in log.unchanged and ("op1", FLOAT) not in log.alone
    assert len(measured) == len({json.dumps(m, sort_keys=True) for m in measured})


def test_measurements_run_side_by_side(tmp_path):
    running, peak, lock = [0], [0], threading.Lock()
    gate = threading.Barrier(2, timeout=5)

    def drop_of(plan: dict[str, str]) -> float:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        with contextlib.suppress(threading.BrokenBarrierError):
            gate.wait()  # two measurements must be in flight at once to get past this
        with lock:
            running[0] -= 1
        return 0.1

    units = _units(4)
    search, ev, _ = _search(tmp_path, units, _fake(drop_of), max_drop=0.01, workers=2)
    ev.many([plan_of({u.key: FLOAT}, search.units) for u in units])
    assert peak[0] == 2


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (95, 100), (1, 2000)])
def test_accuracy_interval_is_wilson(k, n):
    low, high = wilson_interval(k, n)
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert low == pytest.approx(ci.low, abs=1e-9) and high == pytest.approx(ci.high, abs=1e-9)


def test_an_sqnr_budget_holds_on_every_output():
    # a detector whose boxes keep 30 dB but whose scores keep 8 dB does not meet 30 dB
    from quantlens.diagnose.suggest import _metric
    from quantlens.results import ModelResult, OutputFidelity

    outputs = (
        OutputFidelity("boxes", {"sqnr_db": 30.1}),
        OutputFidelity("scores", {"sqnr_db": 8.0}),
    )
    result = ModelResult("m", "m.tflite", "tflite", "candidate", 1, fidelity={"sqnr_db": 30.1},
                         outputs=outputs)  # fmt: skip
    assert _metric(result, "sqnr") == 8.0
    single = ModelResult("m", "m.tflite", "tflite", "candidate", 1, fidelity={"sqnr_db": 30.1})
    assert _metric(single, "sqnr") == 30.1


def test_a_plan_the_quantizer_cannot_build_is_refused_and_the_search_goes_on(tmp_path):
    # int16 activations on op1 are not supported (the quantizer raises); float fixes it
    from quantlens.errors import ConversionError

    def drop_of(plan: dict[str, str]) -> float:
        return 0.01 if plan.get("op1") == FLOAT else 0.2

    fake = _fake(drop_of)
    inner = fake.build

    def build(plan: Plan) -> tuple[bytes, dict]:
        if plan.get("op1") == INT16:
            raise ConversionError("litert-quantizer failed in mode 'int8': no int16 kernel")
        return inner(plan)

    fake.build = build
    units = _units(4)
    search, ev, _ = _search(tmp_path, units, fake, max_drop=0.02)
    log = search.run(units, None)
    assert "no int16 kernel" in log.alone[("op1", INT16)].refused
    assert math.isinf(log.alone[("op1", INT16)].drop) and len(ev.refused) >= 1
    assert {p.name: p.precision for p in log.best.plan}["op1"] == FLOAT

    def broken(plan: Plan) -> tuple[bytes, dict]:
        raise ConversionError("the mode itself fails")

    fake.build = broken
    (tmp_path / "b").mkdir()
    search, _, _ = _search(tmp_path / "b", units, fake, max_drop=0.02)
    with pytest.raises(ConversionError, match="the mode itself fails"):
        search.run(units, None)
