"""The README promises exactly two commands; CI must run the second one verbatim."""
import re

from conftest import REPO


def _quick_start_commands():
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def test_readme_has_exactly_two_commands_and_ci_runs_the_test_one():
    install_and_run, install_and_test = _quick_start_commands()
    assert "run.py method=spos space=nb201" in install_and_run and "-c constraints.txt" in install_and_run
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert install_and_test in ci


def test_constraints_pin_torch():
    pins = (REPO / "constraints.txt").read_text().splitlines()
    assert "torch==2.14.1" in pins and "torchvision==0.29.1" in pins
