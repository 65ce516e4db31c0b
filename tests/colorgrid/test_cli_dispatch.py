import subprocess
import sys

import pytest

from colorgrid import cli


def test_unknown_command_is_an_argparse_error(capsys):
    assert cli.main(["no-such-command"]) == 2  # argparse's exit, as main's return code
    assert "invalid choice" in capsys.readouterr().err


def test_every_registered_command_module_exists_and_has_the_contract():
    for name in cli.COMMANDS:
        module = cli._load(name)
        assert callable(module.add_arguments) and callable(module.run), name
        assert isinstance(module.HELP, str) and module.HELP, name


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "colorgrid", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("colorgrid ")
