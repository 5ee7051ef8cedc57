"""Checks that the README and the docs pages work as written on a fresh clone (tests/test_readme.py runs them): every
command in their ```sh blocks dry-runs, every relative link, image and repository path they name exists (or is made
by a command), every Python snippet's names import.

Dry runs, nothing trained or rendered:
- `python -m ours.module ARGS` (also through `torchrun` and the scripts/*.sh that wrap it): the module is imported in
  this process and its `main` called with argparse stopped right after it parsed ARGS; when the namespace holds
  `--config` and `key.sub=value` overrides, the config is then built by the command's own schema
  (`smplx.utils.config.load_config`), so a misspelt key or an invalid value fails here as it would in the run.
- `make TARGET`: `make -n TARGET`. `scripts/*.sh`: the script exists, is executable, passes `bash -n`, calls the module
  it is mapped to here, and its arguments dry-run as that module's.
- Paths: an argument or inline-code path under a top-level folder of the repository must be a file or folder git
  tracks (or will track: untracked, not ignored), an output (`--out` of some command, or an output tree), or an input
  the user brings (USER_INPUTS). Links and images are resolved from the page's folder; `#anchors` must name a heading.

```text blocks are synopses (placeholders such as [--hand right|left]) and are not run.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import fnmatch
import importlib
import importlib.util
import inspect
import io
import re
import shlex
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))
OUR_PACKAGES = {"handavatar", "smplx", "pairof", "segment", "bench"}
SHELL_LANGS = {"sh", "bash", "shell"}

# Trees the commands write (git-ignored): paths under them are outputs.
OUTPUT_ROOTS = ("out/", "smplx/out/", "pairof/out/", "handavatar/out/", "viewer/dist/", ".venv/", ".venv-video/")
# Inputs a user brings (licensed or personal), named in the README's "Your data".
USER_INPUTS = {
    "data/InterHand/5": "InterHand2.6M, licensed (data/README.md)",
    "mano/MANO_RIGHT.pkl": "MANO, licensed (mano/README.md)",
    "mano/MANO_LEFT.pkl": "MANO, licensed (mano/README.md)",
    "hand.mp4": "the user's own video",
}
PATH_SUFFIXES = (".yaml", ".yml", ".txt", ".md", ".py", ".sh", ".json", ".pkl", ".mp4", ".glb", ".tar", ".pth",
                 ".ckpt", ".npz", ".png", ".obj", ".ply", ".csv")

# The config-driven entry points: (schema module, schema class, defaults attribute and its module).
CONFIG_SCHEMAS = {
    "handavatar.train": ("handavatar.config", "AvatarConfig", "handavatar.config", "DEFAULTS"),
    "handavatar.run": ("handavatar.config", "AvatarConfig", "handavatar.config", "DEFAULTS"),
    "bench.render": ("handavatar.config", "AvatarConfig", "handavatar.config", "DEFAULTS"),
    "bench.texture_baseline": ("handavatar.config", "AvatarConfig", "handavatar.config", "DEFAULTS"),
    "bench.appearance_ceiling": ("handavatar.config", "AvatarConfig", "handavatar.config", "DEFAULTS"),
    "bench.appearance_oracle": ("handavatar.config", "AvatarConfig", "handavatar.config", "DEFAULTS"),
    "handavatar.export": ("handavatar.config", "AvatarConfig", "handavatar.config", "DEFAULTS"),
    "handavatar.export.compare": ("handavatar.config", "AvatarConfig", "handavatar.config", "DEFAULTS"),
    "handavatar.authors": ("handavatar.config", "AvatarConfig", "handavatar.config", "DEFAULTS"),
    "smplx.manohd.train_lbs": ("smplx.manohd.train_lbs", "LBSConfig", "smplx.manohd.train_lbs", "DEFAULTS"),
    "pairof.train": ("pairof.train", "PairOFTrainConfig", "pairof.train", "DEFAULTS"),
}


@dataclass(frozen=True)
class Command:
    page: str
    line: int  # 1-based line of the command's first line in the page
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {shlex.join(self.argv)}"


# ---------------------------------------------------------------------------------------------------------- parsing

def fenced_blocks(text: str) -> list[tuple[str, int, list[str]]]:
    """(language, 1-based line of the first code line, code lines) of every fenced block, indented ones included."""
    blocks, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        match = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
        if not match:
            i += 1
            continue
        indent, lang, start, code = len(match.group(1)), match.group(2), i + 2, []
        i += 1
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            code.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        blocks.append((lang, start, code))
        i += 1
    return blocks


def page_commands(page: str, text: str) -> list[Command]:
    """Every command of the page's shell blocks: continuations joined, comments dropped, split at && ; |."""
    commands = []
    for lang, start, code in fenced_blocks(text):
        if lang not in SHELL_LANGS:
            continue
        joined, first = "", None
        for offset, line in enumerate(code):
            if first is None:
                first = start + offset
            if line.rstrip().endswith("\\"):
                joined += line.rstrip()[:-1] + " "
                continue
            tokens = shlex.split(joined + line, comments=True)
            joined, line_no, first = "", first, None  # the command starts on line_no
            part: list[str] = []
            for token in tokens + ["&&"]:
                if token in ("&&", ";", "|", "||"):
                    if part:
                        commands.append(Command(page, line_no, tuple(part)))
                    part = []
                else:
                    part.append(token)
    return commands


def _prose(text: str) -> str:
    """The page without its fenced blocks."""
    return re.sub(r"^\s*```\w*\s*\n.*?^\s*```\s*$", "", text, flags=re.S | re.M)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[`*_]|\[([^]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


# ------------------------------------------------------------------------------------------------------------ paths

@cache
def repo_files() -> frozenset[str]:
    """Files a fresh clone (of a commit made now) holds: tracked, and untracked but not ignored."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\n")
    return frozenset(f for f in listed if f and (ROOT / f).exists())


@cache
def repo_dirs() -> frozenset[str]:
    return frozenset(str(Path(f).parents[i]) for f in repo_files() for i in range(len(Path(f).parents) - 1))


@cache
def top_level() -> frozenset[str]:
    return frozenset(f.split("/")[0] for f in repo_files()) | {r.split("/")[0] for r in OUTPUT_ROOTS}


@cache
def produced_paths() -> frozenset[str]:
    """Every `--out` of every command on every page (blocks and inline code): outputs a command makes."""
    outs = set()
    for page in PAGES:
        outs |= {out.rstrip("/`") for out in re.findall(r"--out\s+([^\s`]+)", (ROOT / page).read_text())}
    return frozenset(outs)


def _expand(path: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", path)
    if not match:
        return [path]
    return [p for alt in match.group(1).split(",") for p in _expand(path[:match.start()] + alt + path[match.end():])]


def check_path(path: str, where: str) -> list[str]:
    """Problems with a repository-relative path (empty if it exists, is an output or a user input)."""
    problems = []
    for one in _expand(path.strip().rstrip("/").removeprefix("./")):
        if not one or one in repo_files() or one in repo_dirs():
            continue
        if any((one + "/").startswith(root) for root in OUTPUT_ROOTS):
            continue
        if any(one == p or one.startswith(p + "/") for p in set(USER_INPUTS) | produced_paths()):
            continue
        if re.search(r"[*?<\[]", one):  # a pattern or a placeholder: something must match the part before it
            fixed = re.split(r"[*?<\[]", one)[0]
            if "*" in one and any(fnmatch.fnmatch(f, one) for f in repo_files()):
                continue
            if "<" in one and (fixed.rstrip("/") in repo_dirs() or not check_path(fixed.rstrip("/") or ".", where)):
                continue
        problems.append(f"{where}: {one} is not in the repository, not an output and not a user input")
    return problems


def _looks_like_path(token: str) -> bool:
    if token.startswith(("-", "http://", "https://")) or "=" in token or " " in token:
        return False
    first = token.split("/")[0]
    return ("/" in token and first in top_level()) or ("/" not in token and token.endswith(PATH_SUFFIXES))


def check_links_and_paths(page: str, text: str) -> list[str]:
    """Dead links, missing images, unknown anchors and missing repository paths in the page's prose."""
    problems, base = [], (ROOT / page).parent
    prose = _prose(text)
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"^[a-z]+://|^mailto:", target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (base / file_part).resolve() if file_part else ROOT / page
        relative = str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved)
        if file_part and relative not in repo_files() and relative not in repo_dirs():
            problems.append(f"{page}: link {target} points to {relative}, which is not in the repository")
            continue
        if anchor and resolved.suffix == ".md":
            headings = {slug(h) for h in re.findall(r"^#+\s+(.*)$", _prose(resolved.read_text()), flags=re.M)}
            if anchor not in headings:
                problems.append(f"{page}: link {target}: no heading #{anchor} in {relative}")
    for span in re.findall(r"`([^`\n]+)`", prose):
        for token in span.split():
            token = token.strip(",;:()")
            if "/" in token and _looks_like_path(token):
                problems.extend(check_path(token, f"{page}: `{span}`"))
    return problems


# ------------------------------------------------------------------------------------------------------- dry runs

class _Parsed(BaseException):
    """Raised from argparse once the command line has parsed: stops the entry point before it does anything."""

    def __init__(self, namespace: argparse.Namespace):
        super().__init__()
        self.namespace = namespace


def _schema(module: str):
    schema_module, schema, defaults_module, defaults = CONFIG_SCHEMAS[module]
    return (getattr(importlib.import_module(schema_module), schema),
            getattr(importlib.import_module(defaults_module), defaults))


def dry_run_module(module: str, argv: list[str], where: str) -> list[str]:
    """Import `module`, parse `argv` with its own main's argparse, build its config; run nothing."""
    if module.split(".")[0] not in OUR_PACKAGES:
        return [] if importlib.util.find_spec(module) else [f"{where}: no module named {module}"]
    try:
        target = importlib.import_module(module)
        if not hasattr(target, "main") and importlib.util.find_spec(module + ".__main__"):
            target = importlib.import_module(module + ".__main__")
    except Exception as error:  # noqa: BLE001 - any import failure is the finding: a renamed module, a broken file
        return [f"{where}: python -m {module} does not import: {type(error).__name__}: {error}"]
    if not hasattr(target, "main"):
        return [f"{where}: python -m {module}: the module has no main() to run"]
    original = argparse.ArgumentParser.parse_known_args

    def parse_and_stop(self, args=None, namespace=None):  # every argparse entry goes through parse_known_args
        namespace, extras = original(self, args, namespace)
        if extras:  # as parse_args does; none of our mains takes unknown arguments on purpose
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        raise _Parsed(namespace)

    out, err = io.StringIO(), io.StringIO()
    argparse.ArgumentParser.parse_known_args = parse_and_stop
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            if inspect.signature(target.main).parameters:
                target.main(list(argv))
            else:
                with _patched_argv([module, *argv]):
                    target.main()
        return [f"{where}: python -m {module} ran past its argument parsing (the dry run cannot stop it)"]
    except _Parsed as parsed:
        namespace = parsed.namespace
    except SystemExit as stop:
        if stop.code in (0, None) and ("--help" in argv or "-h" in argv):
            return []
        lines = (err.getvalue() or out.getvalue()).strip().splitlines()
        return [f"{where}: python -m {module} exits {stop.code}: {lines[-1] if lines else ''}"]
    finally:
        argparse.ArgumentParser.parse_known_args = original
    if module == "handavatar.demo":  # stage names are checked by the runner, after parsing
        from handavatar.demo import ROOT as DEMO_ROOT, demo_stages
        names = [stage.name for stage in demo_stages(DEMO_ROOT)]
        given = [getattr(namespace, key) for key in ("start", "only", "force") if getattr(namespace, key, None)]
        return [f"{where}: no demo stage {name!r} (stages: {', '.join(names)})" for name in given if name not in names]
    overrides = list(getattr(namespace, "overrides", None) or [])
    config = getattr(namespace, "config", None)
    if config is None and not overrides:
        return []
    if module not in CONFIG_SCHEMAS:
        return [f"{where}: python -m {module} takes a config: add its schema to CONFIG_SCHEMAS in {__name__}"]
    from smplx.utils.config import load_config
    schema, defaults = _schema(module)
    try:
        load_config(schema, [defaults] + ([ROOT / config] if config else []), overrides)
    except (OSError, ValueError) as error:
        return [f"{where}: {error}"]
    return []


@contextlib.contextmanager
def _patched_argv(argv: list[str]):
    import sys
    saved, sys.argv = sys.argv, argv
    try:
        yield
    finally:
        sys.argv = saved


def _script_modules(name: str, args: list[str]) -> list[tuple[str, list[str]]]:
    """What scripts/NAME runs for ARGS: (module, its arguments), as the script's own shell code builds them."""
    config_first = {"train_hand.sh": ("handavatar.train", "configs/synthetic/demo.yaml"),
                    "train_lbs.sh": ("smplx.manohd.train_lbs", "configs/lbs/demo.yaml"),
                    "train_pairof.sh": ("pairof.train", "configs/pairof/demo.yaml")}
    if name in config_first:
        module, default = config_first[name]
        return [(module, ["--config", args[0] if args else default, *args[1:]])]
    if name == "run_hand.sh":
        if args[:1] == ["export"]:
            return [("handavatar.export", args[1:])]
        if args and args[0].endswith(".yaml"):
            return [("handavatar.run", ["--config", args[0], *args[1:]])]
        return [("handavatar.run", ["--config", "configs/synthetic/demo.yaml", *args])]
    if name == "make_masks.sh":
        seqs = [] if "--seq" in args else ["--seq", "ROM04_RT_Occlusion", "--seq", "ROM03_RT_No_Occlusion"]
        return [("segment.masks", [*seqs, *args])]
    if name == "prepare_video.sh":
        return [("segment.video.prepare", args)]
    if name == "video_to_avatar.sh":
        source, rest, prepare, overrides, out, hand, name_ = args[0], args[1:], [], [], None, "right", None
        while rest:
            if rest[0] in ("--out", "--name", "--hand", "--fov", "--focal", "--every", "--max-frames", "--max-side",
                           "--eval-fraction", "--model"):
                out = rest[1] if rest[0] == "--out" else out
                name_ = rest[1] if rest[0] == "--name" else name_
                hand = rest[1] if rest[0] == "--hand" else hand
                if rest[0] not in ("--out", "--name"):
                    prepare += rest[:2]
                rest = rest[2:]
            elif "=" in rest[0]:
                overrides, rest = overrides + rest[:1], rest[1:]
            else:
                raise ValueError(f"scripts/video_to_avatar.sh: unknown option {rest[0]}")
        settings = [f"data.root={out}", f"data.hand={hand}", f"experiment={name_ or Path(out).name}", *overrides]
        return [("segment.video.prepare", [source, "--out", out, *prepare]),
                ("handavatar.train", ["--config", "configs/synthetic/demo.yaml", *settings])]
    raise KeyError(name)


def check_command(command: Command) -> list[str]:
    """Problems with one command, found without running it."""
    argv, where = list(command.argv), str(command)
    program, args = argv[0], argv[1:]
    problems = []
    for token in args:
        value = token.split("=", 1)[1] if "=" in token and not token.startswith("--") else token
        if _looks_like_path(value):
            problems.extend(check_path(value, where))
    if program == "make":
        targets = [a for a in args if "=" not in a]
        run = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True)
        if run.returncode:
            problems.append(f"{where}: make -n fails: {run.stderr.strip().splitlines()[-1]}")
        extra = [a.split("=", 1)[1] for a in args if a.startswith("ARGS=")]
        if targets == ["demo"] and extra:
            problems.extend(dry_run_module("handavatar.demo", shlex.split(extra[0]), where))
        return problems
    if program in ("python", "python3", "python3.11", ".venv/bin/python") or program == "torchrun":
        if "-m" not in args:
            return problems + [f"{where}: only `python -m module` commands are checked; run modules with -m"]
        at = args.index("-m")
        return problems + dry_run_module(args[at + 1], args[at + 2:], where)
    if program.startswith("scripts/"):
        script = ROOT / program
        if program not in repo_files():
            return problems + [f"{where}: {program} is not in the repository"]
        if not script.stat().st_mode & 0o111:
            problems.append(f"{where}: {program} is not executable")
        syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        if syntax.returncode:
            problems.append(f"{where}: bash -n {program}: {syntax.stderr.strip()}")
        try:
            runs = _script_modules(script.name, args)
        except (KeyError, ValueError, IndexError) as error:
            return problems + [f"{where}: no dry-run rule for {program} {shlex.join(args)} ({error})"]
        for module, module_args in runs:
            if f"-m {module} " not in script.read_text() and f"-m {module}\n" not in script.read_text():
                if not any(f"-m {module}" in (ROOT / "scripts" / s).read_text()
                           for s in re.findall(r"scripts/(\w+\.sh)", script.read_text())):
                    problems.append(f"{where}: {program} no longer runs python -m {module}: update {__name__}")
            problems.extend(dry_run_module(module, module_args, where))
        return problems
    if program.endswith("pip") and args[:1] == ["install"]:
        return problems + [p for a, b in zip(args, args[1:]) if a == "-r" for p in check_path(b, where)]
    if program == "conda":
        return problems + [p for a, b in zip(args, args[1:]) if a == "-f" for p in check_path(b, where)]
    if program == "tensorboard":
        return problems
    return problems + [f"{where}: no dry-run rule for the program {program!r} in {__name__}"]


def check_python_snippet(code: str, where: str) -> list[str]:
    """The snippet parses, and every name it imports from our packages (and reads off them) exists."""
    try:
        tree = ast.parse(code)
    except SyntaxError as error:
        return [f"{where}: not valid Python: {error}"]
    problems, modules = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in OUR_PACKAGES:
                    modules[alias.asname or alias.name] = importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in OUR_PACKAGES:
            module = importlib.import_module(node.module)
            problems += [f"{where}: {node.module} has no {a.name}" for a in node.names if not hasattr(module, a.name)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            if not hasattr(modules[node.value.id], node.attr):
                problems.append(f"{where}: {node.value.id} has no {node.attr}")
    return problems
