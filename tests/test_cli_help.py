"""``eqmarl --help`` and every command's ``--help`` say what it does and show an example."""

from __future__ import annotations

import pytest

from eqmarl.cli import _commands, build_parser, main

COMMANDS = sorted(_commands(build_parser()))


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main([*argv, "--help"]) == 0
    return capsys.readouterr().out


def _examples(text: str) -> list[str]:
    assert "\nexamples:\n" in text, text
    return [line.strip() for line in text.split("\nexamples:\n", 1)[1].splitlines() if line.strip()]


def test_every_command_is_covered():
    assert {"doctor", "eval", "install-sc2", "plot", "plot-curves", "render", "sync", "xplay"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help_has_a_description_and_an_example_of_itself(command, capsys):
    text = _help(capsys, command)
    usage, _, rest = text.partition("\n\n")
    assert usage.startswith(f"usage: eqmarl {command}")
    assert rest.strip() and not rest.startswith(("positional arguments", "options")), "no description"
    assert any(line.startswith(f"eqmarl {command} ") for line in _examples(text))


def test_top_level_help_lists_the_commands_and_shows_how_to_train(capsys):
    text = _help(capsys)
    assert all(command in text for command in COMMANDS)
    examples = _examples(text)
    assert any(line.startswith("python launch.py") for line in examples)
    assert any(line.startswith("eqmarl ") for line in examples)
