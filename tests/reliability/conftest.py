"""Fixtures of the reliability tests and the fault-injection tally printed at the end of the run."""

from __future__ import annotations

from collections import Counter

import pytest

TALLY: Counter = Counter()  # kills, kills_survived, fuzz_cases, rejected, data_lost


def pytest_terminal_summary(terminalreporter) -> None:
    if TALLY:
        terminalreporter.write_sep("-", "fault injection")
        terminalreporter.write_line(
            f"kills survived: {TALLY['kills_survived']} of {TALLY['kills']}; fuzz cases tried: {TALLY['fuzz_cases']}; "
            f"inputs rejected: {TALLY['rejected']}; data lost: {TALLY['data_lost']}"
        )
        cli = {key: n for key, n in sorted(TALLY.items()) if key.startswith("cli exit")}
        if cli:
            terminalreporter.write_line("command-line cases: " + ", ".join(f"{k[4:]}: {n}" for k, n in cli.items()))


@pytest.fixture(scope="module")
def tally() -> Counter:
    return TALLY


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny MLP model (6 -> 3) and the model object."""
    from reliability_lib import model_version

    model = model_version(1)
    path = tmp_path_factory.mktemp("model") / "model"
    model.save(path)
    return path, model
