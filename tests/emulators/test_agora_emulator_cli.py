"""The command line: every setting is a flag, and no flag is needed."""

from __future__ import annotations

import argparse

import pytest

from service.emulators.agora import EmulatorConfig, FaultConfig
from service.emulators.agora.cli import add_arguments, config_from_args, main


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_no_flags_give_the_documented_defaults() -> None:
    args = parse()
    assert (args.host, args.port) == ("127.0.0.1", 8081)
    config = config_from_args(args)
    assert config == EmulatorConfig()
    assert (config.app_id, config.customer_key, config.customer_secret) == (
        "emulator-app",
        "emulator-key",
        "emulator-secret",
    )


def test_flags_map_onto_the_config_and_faults() -> None:
    flags = (
        "--app-id app --speed 0 --qps-limit 0 --max-concurrent-tasks 5 --slice-seconds 2"
        " --not-found-form alternate --no-rtc-events --redundant-callbacks"
        " --callback-retry-delays 0,1 --error-rate start=0.5 --error-rate 0.1"
        " --timeout-rate stop=0.2 --latency 0.01,0.02 --callback-drop-rate 0.3 --fault-seed 9"
    )
    faults_json = '{"backup_rate": 0.4, "callback_drop_rate": 0.9}'
    args = parse(*flags.split(), "--faults", faults_json)
    config = config_from_args(args)
    assert (config.app_id, config.speed, config.qps_limit) == ("app", 0.0, 0.0)
    assert (config.max_concurrent_tasks, config.slice_seconds) == (5, 2.0)
    assert (config.not_found_form, config.rtc_events, config.redundant_callbacks) == (
        "alternate",
        False,
        True,
    )
    assert config.callback_retry_delays == (0.0, 1.0)
    assert config.faults == FaultConfig(
        error_rates={"start": 0.5, "*": 0.1},
        timeout_rates={"stop": 0.2},
        latency=(0.01, 0.02),
        callback_drop_rate=0.3,
        backup_rate=0.4,
        seed=9,
    )


def test_a_bad_setting_is_reported_not_raised(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(parse("--callback-drop-rate", "3")) == 2
    assert "probability" in capsys.readouterr().err
