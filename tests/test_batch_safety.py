"""`dreamvid batch` never loses a user's files, and what used to end in a traceback or a stuck run is one line.

The data-loss case first: a job named ``..`` made the job file's own folder the job's folder, and finishing the job
deleted everything in it but ``plan.json``. Then: a job folder batch did not make, an output on another file
system, job files whose tables are not tables, relative job files, chunk plans (property tests), a chunk retried
with smaller tiles and interrupted, and idle workers of a killed batch. Real workers, ffmpeg and model, tiny clips.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dreamvid import batch
from dreamvid.cli import app
from tests.media import make_clip
from tests.test_batch import REPO, TINY


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("safety") / "clip.mp4", n=6, size=(64, 48), fps=12.0)


def _user_folder(folder: Path) -> dict[Path, bytes]:
    """A folder as a user keeps it: a note, a sub-folder of photos, the job file."""
    files = {folder / "notes.txt": b"my notes", folder / "photos" / "a.jpg": b"not really a jpeg"}
    for p, data in files.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


@pytest.mark.parametrize("job", ['name = ".."\noutput = "out.mp4"', 'output = "...mp4"', 'name = "."\noutput = "o.mp4"',
                                 'name = ".hidden"\noutput = "o.mp4"'])
def test_a_job_that_would_not_have_a_folder_of_its_own_is_refused_and_nothing_is_deleted(clip, tmp_path, job):
    kept = _user_folder(tmp_path)
    f = tmp_path / "jobs.toml"
    f.write_text(TINY + f'[[job]]\ninput = "{clip}"\n{job}\n')
    result = CliRunner().invoke(app, ["batch", str(f), "--quiet"])
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "may not start with '.'" in errors[0], result.output
    assert "Traceback" not in result.output
    assert all(p.read_bytes() == data for p, data in kept.items()) and f.is_file()


def test_finishing_a_job_deletes_only_what_batch_made(clip, tmp_path):
    f = tmp_path / "jobs.toml"
    f.write_text(TINY + f'[[job]]\nname = "a"\ninput = "{clip}"\noutput = "out/a.mp4"\n')
    jobs = batch.load_jobs(f)
    d = batch.job_dir(batch.batch_dir_for(f), jobs[0])
    kept = _user_folder(d)  # someone put files in the job's folder
    report = batch.run_local(f, jobs, workers=1)
    assert report["total"]["failed"] == 0, report
    assert jobs[0].output.is_file() and batch.job_done(jobs[0])
    assert all(p.read_bytes() == data for p, data in kept.items())
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt", "photos"]  # batch's own files are gone
    # with nothing of anyone else's in it, the folder itself goes
    for p in kept:
        p.unlink()
    (d / "photos").rmdir()
    batch.tidy_job_dir(d)
    assert not d.exists()


def test_an_output_on_another_file_system_is_published(clip, tmp_path):
    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system (/dev/shm) here to publish onto")
    out = other / f"dreamvid-test-{os.getpid()}" / "a.mp4"
    f = tmp_path / "jobs.toml"
    f.write_text(TINY + f'[[job]]\nname = "a"\ninput = "{clip}"\noutput = "{out}"\n')
    try:
        report = batch.run_local(f, batch.load_jobs(f), workers=1)
        assert report["total"]["failed"] == 0, report
        assert out.is_file() and out.with_name("a.report.json").is_file()
        assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # normal permissions
        again = batch.run_local(f, batch.load_jobs(f), workers=1)  # a rerun finds it done
        assert again["jobs"][0]["state"] == "skipped"
    finally:
        for p in sorted(out.parent.glob("*")):
            p.unlink()
        out.parent.rmdir()


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


@pytest.mark.parametrize("text, needle", [("defaults = 1\n[[job]]\ninput = 'a'\noutput = 'b.mp4'\n", "'defaults'"),
                                          ("job = [1]\n", "[[job]] tables"),
                                          ("job = [1, {input = 'a'}]\n", "[[job]] tables")])
def test_tables_that_are_not_tables_are_one_line(tmp_path, text, needle):
    f = tmp_path / "jobs.toml"
    f.write_text(text)
    result = CliRunner().invoke(app, ["batch", str(f)])
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and needle in errors[0], result.output
    assert "Traceback" not in result.output


def test_a_relative_job_file_gives_every_path_from_its_own_folder(clip, tmp_path, monkeypatch):
    jobs_dir = tmp_path / "project"
    jobs_dir.mkdir()
    (jobs_dir / "clip.mp4").write_bytes(clip.read_bytes())
    guide = REPO / "examples" / "coffee.png"
    (jobs_dir / "guide.png").write_bytes(guide.read_bytes())
    (jobs_dir / "jobs.toml").write_text(TINY + '[[job]]\nname = "a"\ninput = "clip.mp4"\noutput = "out/a.mp4"\n'
                                               '[job.dream]\nguide = "guide.png"\n')
    monkeypatch.chdir(tmp_path)  # elsewhere: a Ray node's working folder is anyone's guess
    job = batch.load_jobs(Path("project/jobs.toml"))[0]
    assert job.input == jobs_dir.resolve() / "clip.mp4" or job.input == jobs_dir.absolute() / "clip.mp4"
    assert job.input.is_absolute() and job.output.is_absolute()
    assert Path(job.config.dream.guide).is_absolute() and Path(job.config.dream.guide).parent.samefile(jobs_dir)
    assert batch.batch_dir_for(Path("project/jobs.toml")).resolve() == (jobs_dir / "jobs.batch").resolve()
    tasks = batch.tasks_for(job, batch.plan_job(job, batch.batch_dir_for(jobs_dir / "jobs.toml")),
                            batch.batch_dir_for(jobs_dir / "jobs.toml"))
    assert all(Path(t.opts.input).is_absolute() and Path(t.opts.output).is_absolute() for t in tasks)


@settings(max_examples=300, deadline=None)
@given(count=st.integers(1, 400), cuts=st.lists(st.integers(-5, 410), max_size=8),
       chunk_frames=st.integers(2, 60), warmup=st.integers(0, 40), fade=st.integers(0, 40),
       feedback=st.booleans())
def test_every_chunk_plan_covers_each_frame_once_and_starts_at_a_real_frame(count, cuts, chunk_frames, warmup,
                                                                           fade, feedback):
    if fade > warmup or chunk_frames <= 2 * fade:  # what load_jobs refuses
        return
    chunks = batch.split(count, cuts, chunk_frames=chunk_frames, warmup=warmup, fade=fade,
                         join_inside_shots=feedback)
    shown = sorted(k for c in chunks for k in range(c.first - c.window, c.end))
    assert shown == list(range(count))  # every frame once: encoded by a chunk, or in a join window
    for i, c in enumerate(chunks):
        assert c.offset >= 0 and c.offset + c.count <= count and c.count >= 1
        assert 0 <= c.window <= c.lead <= warmup and c.lead + c.trail < c.count
        assert c.trail == (chunks[i + 1].window if i + 1 < len(chunks) else 0)
        assert c.index == i
    assert not feedback or all(c.lead <= c.first - max([0, *[k for k in cuts if k <= c.first]]) for c in chunks)


def test_the_plan_that_started_a_chunk_before_frame_0_is_gone():
    chunks = batch.split(30, [], chunk_frames=20, warmup=16, fade=8)
    assert [(c.offset, c.lead, c.window) for c in chunks] == [(0, 0, 0), (0, 15, 8)]


def test_a_chunk_retried_with_smaller_tiles_and_interrupted_resumes(clip, tmp_path):
    f = tmp_path / "jobs.toml"
    f.write_text(TINY + f'tile-size = 256\n[[job]]\nname = "a"\ninput = "{clip}"\noutput = "out/a.mp4"\n')
    job = batch.load_jobs(f)[0]
    bd = batch.batch_dir_for(f)
    plan = batch.plan_job(job, bd)
    task = batch.tasks_for(job, plan, bd)[0]
    smaller = batch.smaller_tiles(task)  # what the runner does after an out-of-memory error
    batch.remember_tiles(bd, job, smaller)
    seen = []

    def stop_after_two(k, total, resumed):
        seen.append(k)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        batch.run_task(smaller, on_frame=stop_after_two)
    again = batch.tasks_for(job, plan, bd)[0]  # the next run of the batch
    assert again.config["dream"]["tile_size"] == 128
    result = batch.run_task(again)
    assert result["frames"] == plan.chunks[0].count - 2  # went on from its third frame: nothing refused or redone


def test_idle_workers_of_a_killed_batch_exit(clip, tmp_path):
    f = tmp_path / "jobs.toml"
    f.write_text(TINY + f'[[job]]\nname = "a"\ninput = "{clip}"\noutput = "out/a.mp4"\nsteps = 40\n')
    proc = subprocess.Popen([sys.executable, "-m", "dreamvid", "batch", str(f), "--workers", "2", "--quiet"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "jobs.batch" / "a.log"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.is_file() and "started" in log.read_text()):
        time.sleep(0.2)
    assert log.is_file(), "the batch never started its chunk"
    workers = _children(proc.pid)
    assert workers, "no worker processes found"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    left = [p for p in workers if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"workers {left} outlived their killed batch"


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (Linux /proc), e.g. the spawned workers and their resource tracker."""
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return [p for p in out if "spawn_main" in _cmdline(p)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_missing_guide_and_a_motion_table_are_checked_with_the_job_file(clip, tmp_path):
    f = tmp_path / "jobs.toml"
    f.write_text(TINY + f'[[job]]\nname = "a"\ninput = "{clip}"\noutput = "a.mp4"\n[job.dream]\nguide = "nope.png"\n'
                        f'[[job]]\nname = "b"\ninput = "{clip}"\noutput = "b.mp4"\n[job.motion]\nzoom = 1.01\n')
    with pytest.raises(batch.BatchFileError) as e:
        batch.load_jobs(f)
    table = f.read_text().splitlines().index("[job.dream]") + 1
    assert [(line, name) for line, name, _ in e.value.problems] == [(table, "a")], e.value.problems
    assert "nope.png does not exist" in str(e.value)
    kept = batch.load_jobs(f, skip_bad=True)
    assert [j.name for j in kept] == ["b"] and kept[0].config.motion.zoom == 1.01
