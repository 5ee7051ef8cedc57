"""The demo's stage runner (handavatar.stages) on toy stages, and the demo's real stage list (handavatar.demo)."""

import io
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from handavatar.stages import Stage, StageFailed, StageRunner, format_plan

REPOSITORY = Path(__file__).resolve().parents[1]
# Each toy stage appends its name to runs.txt, so a test sees exactly which commands ran.
COPY = "import pathlib; p = pathlib.Path; p('{target}').write_text(''.join(p(s).read_text() for s in {sources}))"
B_STAGE = textwrap.dedent("""
    import pathlib, sys
    p = pathlib.Path
    checkpoint = p('run/checkpoint')
    p('b_start.txt').write_text('resumed' if checkpoint.exists() else 'fresh')
    checkpoint.parent.mkdir(exist_ok=True)
    checkpoint.write_text('half done')
    if p('fail.flag').exists():
        print('b: something went wrong')
        sys.exit(3)
    p('b.txt').write_text(p('a.txt').read_text() + p('b.cfg').read_text())
""")


def logged(name: str, code: str) -> tuple[str, ...]:
    return ("python", "-c", f"open('runs.txt', 'a').write('{name}\\n')\n{code}")


def toy_stages() -> list[Stage]:
    """a: in.txt -> a.txt; b: a.txt + b.cfg -> b.txt (run folder run/, fails while fail.flag exists); c: b.txt ->
    c.txt."""
    return [
        Stage("a", logged("a", COPY.format(target="a.txt", sources=["in.txt"])), "first", inputs=("in.txt",),
              outputs=("a.txt",), figures=lambda root: {"size": len((root / "a.txt").read_text())}),
        Stage("b", logged("b", B_STAGE), "second", inputs=("a.txt", "b.cfg"), outputs=("b.txt",), fresh=("run",)),
        Stage("c", logged("c", COPY.format(target="c.txt", sources=["b.txt"])), "third", inputs=("b.txt",),
              outputs=("c.txt",)),
    ]


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "in.txt").write_text("hand ")
    (tmp_path / "b.cfg").write_text("avatar ")
    return tmp_path


def run(root, **options):
    """Run the toy stages; returns ({stage: status}, the stages whose commands ran, in order)."""
    before = (root / "runs.txt").read_text().split() if (root / "runs.txt").exists() else []
    records = StageRunner(toy_stages(), root=root, state_dir="out/demo", echo=io.StringIO()).run(**options)
    after = (root / "runs.txt").read_text().split()
    return {r.name: r.status for r in records}, after[len(before):]


def test_second_run_skips_everything(workdir):
    assert run(workdir) == ({"a": "ran", "b": "ran", "c": "ran"}, ["a", "b", "c"])
    assert (workdir / "c.txt").read_text() == "hand avatar "
    assert run(workdir) == ({"a": "up to date", "b": "up to date", "c": "up to date"}, [])


def test_changed_input_reruns_the_stage_and_those_downstream(workdir):
    run(workdir)
    (workdir / "b.cfg").write_text("avatar, retrained ")
    assert run(workdir) == ({"a": "up to date", "b": "ran", "c": "ran"}, ["b", "c"])
    (workdir / "in.txt").write_text("left hand ")
    assert run(workdir)[1] == ["a", "b", "c"]
    assert (workdir / "c.txt").read_text() == "left hand avatar, retrained "


def test_touching_without_changing_content_reruns_nothing(workdir):
    run(workdir)
    (workdir / "in.txt").write_text((workdir / "in.txt").read_text())  # new modification time, same bytes
    assert run(workdir)[1] == []


def test_missing_output_reruns_its_stage_and_identical_bytes_stop_there(workdir):
    run(workdir)
    (workdir / "b.txt").unlink()
    assert run(workdir) == ({"a": "up to date", "b": "ran", "c": "up to date"}, ["b"])
    assert (workdir / "b_start.txt").read_text() == "resumed"  # same inputs: its run folder was kept


def test_new_inputs_remove_the_stale_run_folder(workdir):
    run(workdir)
    (workdir / "b.cfg").write_text("other ")
    run(workdir)
    assert (workdir / "b_start.txt").read_text() == "fresh"


def test_failed_stage_stops_with_its_command_and_log_and_the_next_run_resumes_it(workdir):
    (workdir / "fail.flag").touch()
    runner = StageRunner(toy_stages(), root=workdir, state_dir="out/demo", echo=io.StringIO())
    with pytest.raises(StageFailed) as failure:
        runner.run()
    message = str(failure.value)
    assert "'b' exited with status 3" in message and "python -c" in message and "out/demo/logs/b.log" in message
    assert (failure.value.stage, failure.value.status) == ("b", 3)
    assert "b: something went wrong" in (workdir / "out/demo/logs/b.log").read_text()
    summary = json.loads((workdir / "out/demo/summary.json").read_text())
    assert [s["status"] for s in summary["stages"]] == ["ran", "failed", "not run"] and not summary["finished"]
    assert "| b | failed (stage 'b' exited with status 3.) |" in (workdir / "out/demo/summary.md").read_text()

    (workdir / "fail.flag").unlink()
    assert run(workdir) == ({"a": "up to date", "b": "ran", "c": "ran"}, ["b", "c"])
    assert (workdir / "b_start.txt").read_text() == "resumed"  # the interrupted run's folder was kept


def test_summary_files_hold_status_times_and_figures(workdir):
    run(workdir)
    run(workdir)
    summary = json.loads((workdir / "out/demo/summary.json").read_text())
    a = summary["stages"][0]
    assert summary["finished"] and a["status"] == "up to date" and a["seconds"] is None
    assert a["last_seconds"] > 0 and a["figures"] == {"size": 5} and a["log"] == "out/demo/logs/a.log"
    assert "| a | up to date | - |" in (workdir / "out/demo/summary.md").read_text()


def test_force_only_and_from(workdir):
    run(workdir)
    assert run(workdir, force="b") == ({"a": "up to date", "b": "ran", "c": "ran"}, ["b", "c"])
    assert (workdir / "b_start.txt").read_text() == "fresh"  # forced: from scratch
    assert run(workdir, only="a", force="a")[1] == ["a"]
    statuses, ran = run(workdir, start="b", force="a")
    assert statuses["a"] == "not selected" and ran == ["b", "c"]


def test_plan_runs_nothing_and_marks_downstream_stages(workdir):
    run(workdir)
    (workdir / "in.txt").write_text("new ")
    runner = StageRunner(toy_stages(), root=workdir, state_dir="out/demo", echo=io.StringIO())
    plan = runner.plan()
    assert [(s.name, d.run) for s, d in plan] == [("a", True), ("b", False), ("c", False)]
    assert "runs if the outputs of a change" in plan[1][1].reason and "of b change" in plan[2][1].reason
    listing = format_plan(runner.plan(force="b"), dry_run=True)
    assert "removes first: run" in listing and "$ python -c" in listing
    assert (workdir / "runs.txt").read_text().split() == ["a", "b", "c"]


def test_unknown_stage_is_named_with_the_nearest(workdir):
    with pytest.raises(ValueError, match="no stage 'bb'.*did you mean 'b'"):
        StageRunner(toy_stages(), root=workdir, echo=io.StringIO()).run(only="bb")


def test_demo_stages_chain_through_their_files():
    """The real demo: stage order, and each training stage reads what the one before it publishes."""
    from handavatar.demo import ROOT, demo_stages
    stages = {s.name: s for s in demo_stages(ROOT)}
    assert list(stages) == ["open_hand", "synthetic", "masks", "cache", "lbs", "pairof", "avatar", "val",
                            "freepose", "freeview"]
    chain = [("synthetic", "masks", "data/synthetic/capture.json"),
             ("lbs", "pairof", "smplx/out/pretrained_lbs_weights/lbs_weights.pth"),
             ("pairof", "avatar", "pairof/out/pretrained_pairof/pairof.ckpt"),
             ("avatar", "val", "handavatar/out/handavatar/synthetic_demo/latest.tar"),
             ("avatar", "freepose", "handavatar/out/handavatar/synthetic_demo/latest.tar")]
    for upstream, downstream, path in chain:
        assert path in stages[upstream].outputs and path in stages[downstream].inputs, (upstream, downstream)
    assert stages["val"].command == ("scripts/train_hand.sh", "configs/synthetic/demo.yaml", "phase=val")
    assert stages["lbs"].fresh == ("smplx/out/demo_lbs",)


def test_killed_run_resumes_the_stage_it_was_in(workdir):
    """SIGTERM to the runner stops the running command; the stage's stamp stays 'running' and the next run resumes
    it without removing its run folder."""
    slow = ("import pathlib, time; p = pathlib.Path; p('run').mkdir(exist_ok=True); "
            "resumed = p('run/started').exists(); p('run/started').touch()\n"
            "if not resumed: time.sleep(60)\n"
            "p('slow.txt').write_text('resumed' if resumed else 'fresh')")
    script = textwrap.dedent(f"""
        import io, sys
        from handavatar.stages import Stage, StageRunner
        stage = Stage("slow", ("python", "-c", {slow!r}), outputs=("slow.txt",), fresh=("run",))
        try:
            StageRunner([stage], root={str(workdir)!r}, echo=io.StringIO()).run()
        except KeyboardInterrupt as error:
            print(error)
            sys.exit(130)
    """)
    runner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPOSITORY)
    deadline = time.monotonic() + 20
    while not (workdir / "run/started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    runner.send_signal(signal.SIGTERM)
    output, _ = runner.communicate(timeout=20)
    assert runner.returncode == 130 and "interrupted during stage slow" in output
    assert json.loads((workdir / "out/demo/stamps/slow.json").read_text())["state"] == "running"
    subprocess.run([sys.executable, "-c", script], check=True, timeout=20, cwd=REPOSITORY)
    assert (workdir / "slow.txt").read_text() == "resumed"


def test_a_stage_stopped_by_a_user_error_ends_the_demo_with_one_error_line_and_status_2(monkeypatch, capsys):
    """A stage whose command exits 2 (its own `error:` line printed above) ends the demo with status 2 and one more
    `error:` line naming the stage and its log; another failure keeps the longer message and status 1."""
    import handavatar.demo as demo
    for status, expected in ((2, 2), (1, 1)):
        def failing(self, **kwargs):
            raise StageFailed("masks", f"stage 'masks' exited with status {status}.", status=status)
        monkeypatch.setattr(demo.StageRunner, "run", failing)
        assert demo.main([]) == expected
        errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        if status == 2:
            assert len(errors) == 1 and errors[0].startswith("error: stage 'masks'") and "out/demo/logs/masks.log" \
                in errors[0]
        else:
            assert errors[0].startswith("demo stopped: stage 'masks' exited with status 1")
