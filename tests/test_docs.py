"""What the README and docs tell a newcomer, checked against the code and each other."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

from keras_resnet_cifar.models import pretrained

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _sections(text: str) -> list[str]:
    return re.findall(r"(?m)^## (.+)$", text)


def test_the_readme_leads_with_install_and_a_first_run():
    """What the project is, how to install it and a first run come before any results."""
    sections = _sections(README)
    assert sections[:3] == ["Install", "A first run (a minute or two on a CPU)",
                            "Results at a glance"], sections
    intro = README.split("\n## ", 1)[0]
    assert len(intro.splitlines()) < 30 and "%" not in intro  # no statistics before Install


def test_every_checkpoint_the_readme_names_says_where_it_comes_from():
    """B1: a .th file in a command is either fetched by name or given with its URL."""
    assert "import_weights --weights=resnet20\n" in README
    for name in set(re.findall(r"resnet\d+-[0-9a-f]{8}\.th", README)):
        model = name.split("-")[0]
        assert pretrained.url(model) in README, name


def test_the_readme_keeps_its_example_files_out_of_git():
    """F5: the batch.npy example writes where git ignores it and says how many images."""
    saved = re.findall(r"np\.save\('([^']+)', .*?\[:(\d+)\]\)", README)
    assert saved, "the README's np.save example is gone"
    for path, count in saved:
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
        assert ignored.returncode == 0, f"{path} would be an untracked file in the checkout"
        assert count == "4" and "first four test images" in README


def test_one_figure_for_the_suite_time_and_one_name_per_variable():
    """The suite's duration is given in docs/testing.md only; the realdata marker names the
    variables conftest and docs/testing.md use; exports/README says what the lock holds."""
    tests_section = README.split("\n## Tests", 1)[1].split("\n## ", 1)[0]
    assert not re.search(r"\d+ minutes", tests_section)
    testing = (REPO / "docs" / "testing.md").read_text()
    marker = next(m for m in tomllib.loads((REPO / "pyproject.toml").read_text())
                  ["tool"]["pytest"]["ini_options"]["markers"] if m.startswith("realdata"))
    for variable in set(re.findall(r"KRC_[A-Z0-9]+", marker)):
        assert f"`{variable}`" in testing, variable
    assert {"KRC_REFERENCE", "KRC_CIFAR10"} <= set(re.findall(r"KRC_[A-Z0-9]+", marker))
    exports = (REPO / "exports" / "README.md").read_text()
    assert "empty file" not in exports and "id of the process" in exports


def test_every_relative_link_in_the_docs_resolves():
    """A link to a file or folder of the repo (docs moved or renamed) points at one that is there."""
    tracked = subprocess.run(["git", "ls-files", "*.md"], capture_output=True, text=True,
                             cwd=REPO)
    pages = ([REPO / p for p in tracked.stdout.splitlines()] if tracked.returncode == 0
             else [p for p in REPO.rglob("*.md") if ".venv" not in p.parts])
    assert len(pages) > 10
    broken = [f"{page.relative_to(REPO)}: {target}" for page in pages
              for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text())
              if not target.startswith(("http://", "https://", "mailto:"))
              and not (page.parent / target).exists()]
    assert not broken, broken
