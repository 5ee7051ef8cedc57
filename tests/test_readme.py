"""The README and the docs pages work as written on a fresh clone (issue 20): every command of their ```sh blocks
dry-runs, every link, image, anchor and repository path exists, every Python snippet's names import; the checks
themselves (tests/readme_checks.py) are shown to catch plausible bugs."""

from __future__ import annotations

import re

import pytest

from tests.readme_checks import (PAGES, ROOT, fenced_blocks, check_command, check_links_and_paths,
                                 check_python_snippet, page_commands, repo_files)


@pytest.mark.parametrize("page", PAGES)
def test_commands_dry_run(page):
    commands = page_commands(page, (ROOT / page).read_text())
    problems = [p for command in commands for p in check_command(command)]
    assert not problems, "\n".join(problems)


def test_readme_shows_every_pipeline_command():
    """The README names each entry point people type: the scripts, make demo/test and the trainers' modules."""
    programs = {c.argv[0] for c in page_commands("README.md", (ROOT / "README.md").read_text())}
    scripts = {f for f in repo_files() if re.fullmatch(r"scripts/\w+\.sh", f)}
    assert scripts <= programs, f"scripts missing from the README's commands: {sorted(scripts - programs)}"


@pytest.mark.parametrize("page", PAGES)
def test_links_images_and_paths_exist(page):
    problems = check_links_and_paths(page, (ROOT / page).read_text())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", PAGES)
def test_python_snippets_import(page):
    problems = []
    for lang, start, code in fenced_blocks((ROOT / page).read_text()):
        if lang == "python":
            problems += check_python_snippet("\n".join(code), f"{page}:{start}")
    assert not problems, "\n".join(problems)


def test_readme_is_a_guide_with_the_tree():
    """Issue 20: under ~250 lines, and its layout block names every top-level folder a clone has."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    layout = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    folders = {f.split("/")[0] for f in repo_files() if "/" in f and not f.startswith(".")}
    missing = [f for f in sorted(folders) if not re.search(rf"(^|\s){re.escape(f)}/", layout, flags=re.M)]
    assert not missing, f"the README's layout omits {missing}"


def test_the_checks_catch_plausible_bugs(tmp_path):
    """A renamed module, a misspelt config key, a bad value, a dead link, a missing anchor, a moved config file, a
    misspelt make target and a misspelt import each produce a problem (the checks above can fail)."""
    def problems_of(line: str) -> list[str]:
        return [p for c in page_commands("README.md", f"```sh\n{line}\n```\n") for p in check_command(c)]

    assert problems_of("python -m handavatar.trian --config configs/synthetic/demo.yaml")
    assert problems_of("scripts/train_hand.sh configs/synthetic/demo.yaml train.maxitr=5")
    assert any("maxiter" in p for p in problems_of("scripts/train_hand.sh configs/synthetic/demo.yaml train.maxitr=5"))
    assert problems_of("scripts/run_hand.sh configs/synthetic/demo.yaml run.mode=freepsoe")
    assert problems_of("scripts/train_lbs.sh configs/lbs/demo.yaml loss.surfce=50")
    assert problems_of("python -m pairof.train --config configs/pairof/demo.yaml --evaluate")
    assert problems_of("scripts/train_hand.sh configs/synthetic/demo2.yaml")
    assert problems_of("scripts/train_avatar.sh configs/synthetic/demo.yaml")
    assert problems_of("make tset")
    assert problems_of("make demo ARGS=--lsit")
    assert problems_of("python -m handavatar.demo --only vall")
    assert not problems_of("python -m handavatar.demo --only val")
    assert problems_of("python -m segment.preprocess --root data/InterHand/5 --subjects test/Capture0/ROM04")
    assert not problems_of("scripts/train_hand.sh configs/synthetic/demo.yaml train.maxiter=5")
    assert check_links_and_paths("README.md", "[testing](docs/tseting.md)")
    assert check_links_and_paths("README.md", "![strip](docs/freepose_stirp.png)")
    assert check_links_and_paths("README.md", "[data](docs/data.md#no-such-heading)")
    assert check_links_and_paths("README.md", "the schema `handavatar/configs.py`")
    assert not check_links_and_paths("README.md", "the schema `handavatar/config.py`, [t](docs/testing.md)")
    assert check_python_snippet("from pairof import PairOF, load_pairoff", "snippet")
    assert check_python_snippet("import smplx\nsmplx.creat('mano')", "snippet")
