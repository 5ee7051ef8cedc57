"""A resumable, incremental stage runner: a list of command lines, each run only when what it depends on changed.

A `Stage` declares its command (argv, run in the root; a leading "python" is this interpreter), its inputs (files or
folders whose content decides the outputs: configs, the model file, upstream outputs) and its outputs. The runner
keeps one stamp per stage, `<state>/stamps/<stage>.json`, with the command and the sha256 of every input it ran on.

Up-to-date rules:
- a stage runs when it has no stamp, its command or an input's hash differs from its stamp, an output is missing, or
  its last run did not finish (killed or failed);
- upstream outputs are downstream inputs, so a stage whose outputs change makes the stages that read them run again,
  and one that reruns with byte-identical outputs does not;
- a stage that starts on new inputs (never ran here, command or inputs changed, or forced) first removes its `fresh`
  paths (run folders, checkpoints), so a trainer does not resume a checkpoint made for other inputs; a stage whose
  last run was interrupted on the same inputs keeps them, and the command resumes (trainers from their checkpoints);
- before a stage runs, the half-written temporary files that killed runs left next to its outputs are removed
  (`smplx.utils.fileio.remove_stale_temporaries`: only those of processes no longer running).
Source code is not an input: after changing code, force the stages it affects.

Every stage's output goes to the terminal and to `<state>/logs/<stage>.log`; `<state>/summary.md` and `summary.json`
record each stage's status, wall time and key figures after every run, finished or not.
"""

from __future__ import annotations

import codecs
import difflib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from smplx.utils.cli import InputError
from smplx.utils.fileio import remove_stale_temporaries

__all__ = ["Stage", "Decision", "StageRecord", "StageRunner", "StageFailed", "summary_table", "format_plan"]


@dataclass(frozen=True)
class Stage:
    """One step of a pipeline. Paths are relative to the runner's root."""

    name: str  # short identifier, used in stamps, logs and --from/--only/--force
    command: tuple[str, ...]  # argv run in the root; a leading "python" runs this interpreter
    description: str = ""
    inputs: tuple[str, ...] = ()  # files or folders whose content decides the outputs
    outputs: tuple[str, ...] = ()  # files or folders the stage must leave behind
    fresh: tuple[str, ...] = ()  # removed before a start on new inputs (run folders, checkpoints)
    skip: str = ""  # non-empty: why the stage does not apply here; it is not run
    figures: Callable[[Path], dict[str, Any]] | None = field(default=None, compare=False)  # key figures, from root


@dataclass(frozen=True)
class Decision:
    run: bool
    reason: str  # "up to date", "never ran here", "input changed: <path>", "resuming (interrupted)", ...
    clean: bool = False  # remove the stage's fresh paths first


@dataclass
class StageRecord:
    """What happened to one stage in one invocation (a row of the summary)."""

    name: str
    status: str  # ran, up to date, failed, skipped, not run, not selected
    reason: str
    command: str
    log: str
    seconds: float | None = None  # wall time in this invocation
    last_seconds: float | None = None  # wall time of its last finished run (from the stamp)
    figures: dict[str, Any] = field(default_factory=dict)


class StageFailed(RuntimeError):
    """A stage's command failed, or finished without writing its outputs; the message names the stage, the command
    and the log, and says that the next run resumes there."""

    def __init__(self, stage: str, message: str, status: int | None = None):
        super().__init__(message)
        self.stage, self.status = stage, status  # the command's exit status (None: it wrote no outputs)


class _Interrupted(Exception):
    pass


def _raise_interrupt(signum, frame):
    raise _Interrupted(signal.Signals(signum).name)


def display_command(command: Sequence[str]) -> str:
    return shlex.join(command)


class StageRunner:
    """Runs `stages` in order under `root`, keeping stamps, logs and summaries in `root/state_dir`."""

    def __init__(self, stages: Sequence[Stage], *, root: str | Path = ".", state_dir: str | Path = "out/demo",
                 echo: TextIO | None = None):
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names repeat: {names}")
        self.stages = list(stages)
        self.root = Path(root).resolve()
        self.state = self.root / state_dir
        self.echo = echo if echo is not None else sys.stdout
        self._hashes: dict[tuple, str] = {}  # (path, inode, size, mtime, ctime) -> sha256, for this process

    def index(self, name: str) -> int:
        """The position of the stage called `name`; an InputError names the stages and the nearest one."""
        names = [s.name for s in self.stages]
        if name not in names:
            near = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise InputError(f"no stage {name!r}: the stages are {', '.join(names)}{hint}")
        return names.index(name)

    def _selection(self, start: str | None, only: str | None, force: str | None) -> tuple[set[str], set[str]]:
        first = self.index(start) if start else 0
        selected = [s.name for s in self.stages[first:]]
        if only:
            selected = [self.stages[self.index(only)].name]
        forced = {s.name for s in self.stages[self.index(force):]} if force else set()
        return set(selected), forced & set(selected)

    def _file_hash(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        if key not in self._hashes:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    digest.update(block)
            self._hashes[key] = digest.hexdigest()
        return self._hashes[key]

    def path_hash(self, relative: str) -> str | None:
        """sha256 of a file; of a folder, over its files' relative paths and hashes; None when it does not exist."""
        path = self.root / relative
        if path.is_file():
            return self._file_hash(path)
        if not path.is_dir():
            return None
        digest = hashlib.sha256()
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(f"{item.relative_to(path).as_posix()}\0{self._file_hash(item)}\n".encode())
        return digest.hexdigest()

    def input_hashes(self, stage: Stage) -> dict[str, str | None]:
        return {path: self.path_hash(path) for path in stage.inputs}

    def stamp_path(self, stage: Stage) -> Path:
        return self.state / "stamps" / f"{stage.name}.json"

    def log_path(self, stage: Stage) -> Path:
        return self.state / "logs" / f"{stage.name}.log"

    def read_stamp(self, stage: Stage) -> dict | None:
        try:
            return json.loads(self.stamp_path(stage).read_text())
        except (OSError, ValueError):
            return None

    def _write_stamp(self, stage: Stage, **content) -> None:
        path = self.stamp_path(stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"stage": stage.name, "command": list(stage.command), **content}, indent=1))
        os.replace(temporary, path)

    def decide(self, stage: Stage, *, force: bool = False) -> Decision:
        """Whether `stage` runs now, why, and whether its fresh paths go first (module docstring: the rules)."""
        if stage.skip:
            return Decision(False, f"skipped: {stage.skip}")
        if force:
            return Decision(True, "forced", clean=True)
        stamp = self.read_stamp(stage)
        if stamp is None:
            return Decision(True, "never ran here", clean=True)
        if stamp.get("command") != list(stage.command):
            return Decision(True, "command changed", clean=True)
        recorded, current = stamp.get("inputs", {}), self.input_hashes(stage)
        changed = [p for p in stage.inputs if recorded.get(p, "") != current[p]]
        if changed or set(recorded) != set(current):
            what = changed[0] if changed else ", ".join(sorted(set(recorded) ^ set(current)))
            return Decision(True, f"input changed: {what}", clean=True)
        if stamp.get("state") != "done":
            return Decision(True, f"resuming ({stamp.get('state', 'unfinished')} last time)")
        missing = [p for p in stage.outputs if not (self.root / p).exists()]
        if missing:
            return Decision(True, f"output missing: {missing[0]}")
        return Decision(False, "up to date")

    def _depends_on(self, stage: Stage, upstream: Stage) -> bool:
        def related(a: str, b: str) -> bool:
            pa, pb = Path(a).parts, Path(b).parts
            return pa[:len(pb)] == pb or pb[:len(pa)] == pa
        return any(related(i, o) for i in stage.inputs for o in upstream.outputs)

    def plan(self, *, start: str | None = None, only: str | None = None,
             force: str | None = None) -> list[tuple[Stage, Decision | None]]:
        """What a run with these options would do, without running anything. A stage that reads the outputs of a
        stage planned to run is marked as depending on it (None as the decision means: not selected)."""
        selected, forced = self._selection(start, only, force)
        result, pending = [], []
        for stage in self.stages:
            if stage.name not in selected:
                result.append((stage, None))
                continue
            decision = self.decide(stage, force=stage.name in forced)
            upstream = [u.name for u in pending if self._depends_on(stage, u)]
            if not decision.run and not stage.skip and upstream:
                decision = Decision(False, f"up to date; runs if the outputs of {', '.join(upstream)} change")
            if decision.run or upstream:
                pending.append(stage)
            result.append((stage, decision))
        return result

    def _remove(self, relative: str) -> None:
        path = (self.root / relative).resolve()
        if path == self.root or self.root not in path.parents:
            raise ValueError(f"refusing to remove {path}: not inside {self.root}")
        if path.is_dir():
            print(f"removing {relative}/ (made for other inputs)", file=self.echo, flush=True)
            shutil.rmtree(path)
        elif path.exists():
            print(f"removing {relative} (made for other inputs)", file=self.echo, flush=True)
            path.unlink()

    def _execute(self, stage: Stage) -> int:
        """Run the command in the root, streaming its output to echo and to the log; returns the exit status."""
        argv = [sys.executable, *stage.command[1:]] if stage.command[0] == "python" else list(stage.command)
        log = self.log_path(stage)
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        with open(log, "wb") as sink:
            sink.write(f"$ {display_command(stage.command)}\n".encode())
            try:
                process = subprocess.Popen(argv, cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                           env=env)
            except OSError as error:
                message = f"cannot start {argv[0]}: {error}\n"
                sink.write(message.encode())
                self.echo.write(message)
                return 127
            try:
                while chunk := process.stdout.read1(1 << 16):
                    sink.write(chunk)
                    sink.flush()
                    self.echo.write(decoder.decode(chunk))
                    self.echo.flush()
                return process.wait()
            except (KeyboardInterrupt, _Interrupted):
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                raise

    def run_stage(self, stage: Stage, decision: Decision) -> float:
        """Run one stage (removing its fresh paths first when the decision says so); returns its wall time, s.

        Raises:
            StageFailed: the command failed or left an output missing; the stamp says so and the next run resumes.
        """
        inputs = self.input_hashes(stage)
        if decision.clean:
            for path in stage.fresh:
                self._remove(path)
        for folder in {(self.root / p).parent for p in (*stage.outputs, *stage.fresh)}:
            if folder.is_dir() and (folder == self.root or self.root in folder.parents):
                remove_stale_temporaries(folder, tree=True)  # a killed run's half-written files (their pid is dead)
        shown = display_command(stage.command)
        self._write_stamp(stage, state="running", inputs=inputs)
        print(f"$ {shown}", file=self.echo, flush=True)
        start = time.perf_counter()
        code = self._execute(stage)
        seconds = time.perf_counter() - start
        log = self.log_path(stage).relative_to(self.root)
        missing = [p for p in stage.outputs if not (self.root / p).exists()]
        if code != 0 or missing:
            self._write_stamp(stage, state="failed", inputs=inputs, exit_status=code)
            what = f"exited with status {code}" if code != 0 else f"finished without writing {', '.join(missing)}"
            raise StageFailed(stage.name, f"stage {stage.name!r} {what}.\n  command: {shown}\n  log: {log}\n"
                                          "Fix the cause and run again: stages before it are kept, and this one "
                                          "resumes.", status=code if code != 0 else None)
        self._write_stamp(stage, state="done", inputs=inputs, seconds=round(seconds, 2),
                          outputs={p: self.path_hash(p) for p in stage.outputs})
        return seconds

    def run(self, *, start: str | None = None, only: str | None = None, force: str | None = None) -> list[StageRecord]:
        """Run the selected stages in order (each decided when its turn comes, after its upstream ran), then write
        the summary. Raises StageFailed (after writing the summary) when a stage fails."""
        selected, forced = self._selection(start, only, force)
        records = {s.name: self._record(s, "not selected" if s.name not in selected else "not run", "")
                   for s in self.stages}
        previous = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _raise_interrupt)
        current = None
        try:
            for number, stage in enumerate(self.stages, 1):
                if stage.name not in selected:
                    continue
                current = stage
                decision = self.decide(stage, force=stage.name in forced)
                record = records[stage.name]
                record.reason = decision.reason
                if not decision.run:
                    record.status = "skipped" if stage.skip else "up to date"
                    print(f"[{number}/{len(self.stages)}] {stage.name}: {decision.reason}", file=self.echo)
                    continue
                print(f"\n[{number}/{len(self.stages)}] {stage.name}: {stage.description} ({decision.reason})",
                      file=self.echo, flush=True)
                try:
                    record.seconds = self.run_stage(stage, decision)
                except StageFailed as error:
                    record.status, record.reason = "failed", str(error).splitlines()[0]
                    raise
                record.status = "ran"
            current = None
        except (KeyboardInterrupt, _Interrupted) as error:
            if current is not None:
                records[current.name].status = "interrupted"
            raise KeyboardInterrupt(f"interrupted during stage {current.name if current else '?'}; run again to "
                                    "resume there") from error
        finally:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, previous)
            for stage in self.stages:
                records[stage.name].figures = self._figures(stage)
                records[stage.name].last_seconds = (self.read_stamp(stage) or {}).get("seconds")
            self.write_summary(list(records.values()))
        return list(records.values())

    def _record(self, stage: Stage, status: str, reason: str) -> StageRecord:
        return StageRecord(stage.name, status, reason, display_command(stage.command),
                           str(self.log_path(stage).relative_to(self.root)))

    def _figures(self, stage: Stage) -> dict[str, Any]:
        if stage.figures is None:
            return {}
        try:
            return stage.figures(self.root)
        except FileNotFoundError:
            return {}  # not made yet
        except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
            return {"figures unreadable": f"{type(error).__name__}: {error}"}

    def write_summary(self, records: list[StageRecord]) -> None:
        """`<state>/summary.md` (the table) and `summary.json` (everything), and the table on the terminal."""
        self.state.mkdir(parents=True, exist_ok=True)
        table = summary_table(records)
        (self.state / "summary.md").write_text(table)
        content = {"finished": all(r.status in ("ran", "up to date", "skipped", "not selected") for r in records),
                   "stages": [asdict(r) for r in records]}
        (self.state / "summary.json").write_text(json.dumps(content, indent=1, default=str))
        where = self.state.relative_to(self.root) if self.root in self.state.parents else self.state
        print(f"\n{table}\nsummary: {where}/summary.md, {where}/summary.json; logs: {where}/logs/", file=self.echo,
              flush=True)


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "n/a" if value is None else str(value)


def summary_table(records: Sequence[StageRecord]) -> str:
    """A Markdown table: stage, status, wall time now, wall time of its last finished run, key figures."""
    lines = ["| stage | status | time | last run | key figures |", "|---|---|---|---|---|"]
    for r in records:
        figures = "; ".join(f"{k} {_format_value(v)}" for k, v in r.figures.items()) or "-"
        status = r.status
        if r.status not in ("ran", "up to date", "not selected") and r.reason:
            status = r.reason if r.reason.startswith(r.status) else f"{r.status} ({r.reason})"
        lines.append(f"| {r.name} | {status} | {format_seconds(r.seconds)} | {format_seconds(r.last_seconds)} | "
                     f"{figures} |")
    return "\n".join(lines) + "\n"


def format_plan(plan: Sequence[tuple[Stage, Decision | None]], *, dry_run: bool = False) -> str:
    """The stages with their status and command (`dry_run`: only those that would run, with what goes first)."""
    lines = []
    for number, (stage, decision) in enumerate(plan, 1):
        if dry_run and (decision is None or not decision.run):
            continue
        status = "not selected" if decision is None else ("runs: " if decision.run else "") + decision.reason
        lines.append(f"{number:2d}. {stage.name:10s} {status}")
        lines.append(f"    {stage.description}")
        lines.append(f"    $ {display_command(stage.command)}")
        if dry_run and decision.clean and stage.fresh:
            lines.append(f"    removes first: {', '.join(stage.fresh)}")
    return "\n".join(lines) if lines else "nothing to run: every selected stage is up to date"
