"""Runs described in TOML: same as the command line, the command line wins, bad keys named."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quantlens.cli import build_parser, main
from quantlens.config import merge_argv
from quantlens.errors import ConfigError


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    return repr(v)


def write_toml(path, table: str, values: dict) -> None:
    lines = [f"[{table}]"] + [f"{k} = {toml_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")


def test_config_equals_the_command_line_and_the_command_line_wins(tmp_path, digits_models):
    config = tmp_path / "run.toml"
    write_toml(config, "evaluate", {
        "reference": str(digits_models["float"]), "candidates": [str(digits_models["int8io"])],
        "data": "digits", "batch-size": 16, "limit": 40, "no_bench": True,
        "fail-on": ["accuracy_drop>0.5"],
    })  # fmt: skip
    parser = build_parser()
    from_file = parser.parse_args(merge_argv(["evaluate", "--config", str(config)], parser))
    assert from_file.batch_size == 16 and from_file.limit == 40 and from_file.no_bench
    assert from_file.candidates == [str(digits_models["int8io"])]
    assert from_file.fail_on == ["accuracy_drop>0.5"]
    over = parser.parse_args(
        merge_argv(["evaluate", "--config", str(config), "--limit", "7"], parser)
    )
    assert over.limit == 7
    out = tmp_path / "r.json"
    assert main(["evaluate", "--config", str(config), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["dataset"]["samples"] == 40


@pytest.mark.parametrize(("values", "message"), [
    ({"bogus": 1}, "unknown key 'bogus'"),
    ({"data": {"nested": 1}}, "'data' must be a string or a number"),
    ({"no-bench": "yes"}, "'no-bench' must be true or false"),
])  # fmt: skip
def test_bad_config_names_the_key(tmp_path, capsys, values: dict, message: str) -> None:
    config = tmp_path / "run.toml"
    write_toml(config, "evaluate", values)
    assert main(["evaluate", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bad_value_type_is_named_by_its_option(tmp_path, capsys) -> None:
    config = tmp_path / "run.toml"
    write_toml(config, "evaluate", {"reference": "a.tflite", "candidates": ["b.tflite"],
                                    "data": "digits", "batch-size": "many"})  # fmt: skip
    assert main(["evaluate", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "--batch-size" in err and err.count("\n") == 1


def test_missing_or_broken_config_file(tmp_path, capsys) -> None:
    assert main(["evaluate", "--config", str(tmp_path / "nope.toml")]) == 2
    (tmp_path / "bad.toml").write_text("[evaluate\nx=")
    assert main(["evaluate", "--config", str(tmp_path / "bad.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err


KEYS = st.sampled_from(["data", "batch-size", "limit", "no-bench", "fail-on", "threads",
                        "candidates", "reference", "bogus", "task", "json"])  # fmt: skip
VALUES = st.one_of(
    st.booleans(), st.integers(-5, 100), st.text(max_size=8),
    st.lists(st.text(max_size=5), max_size=3), st.floats(allow_nan=False, allow_infinity=False),
)  # fmt: skip


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_config_parser_works_or_raises_config_errors(tmp_path, values: dict) -> None:
    config = tmp_path / "run.toml"
    write_toml(config, "evaluate", values)
    parser = build_parser()
    try:
        tokens = merge_argv(["evaluate", "--config", str(config)], parser)
    except ConfigError:
        return
    assert tokens[0] == "evaluate"
