"""`dreamvid batch`: job files, chunks, the local workers and the Ray runner (dreamvid.batch, dreamvid.batch_ray).

Everything real: worker processes (spawn) with their own TensorFlow model, real ffmpeg, a real local Ray instance.
Tiny clips (64x48, 16 frames with a scene cut at 8), one octave, one step, random weights, lossless H.264 (crf 0) so
that decoded frames can be compared exactly. (With a lossy crf every chunk is its own x264 encode, whose choices
differ from one encode of the whole clip: the dreamed frames are equal, the decoded ones only close.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dreamvid import batch
from dreamvid.cli import app
from dreamvid.config import resolve
from dreamvid.pipeline import render
from tests.conftest import WEIGHTS_FILE, load_example, needs, read_rgb, write_rgb
from tests.media import make_clip, make_song
from tests.render_fixtures import decode_all

REPO = Path(__file__).resolve().parents[1]
N, CUT = 16, 8
# the trained weights where they are (a worker loads them in ~3 s), else random ones (~15 s to initialise)
WEIGHTS = str(WEIGHTS_FILE) if WEIGHTS_FILE is not None else "random"
TINY = f"""
[defaults]
weights = "{WEIGHTS}"
octaves = 1
steps = 1
crf = 0
x264-preset = "ultrafast"
warmup = 3
fade = 2
"""


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch_media")
    photo = load_example("chelsea.png", 64)
    write_rgb(d / "photos" / "b10.png", photo[::-1].copy())
    write_rgb(d / "photos" / "b2.png", photo)
    return {"clip": make_clip(d / "cut.mp4", n=N, size=(64, 48), fps=24.0, cut_at=CUT),
            "song": make_song(d / "song.wav", 1.0, kind="beats"),
            "still": write_rgb(d / "still.png", load_example("coffee.png", 64)), "photos": d / "photos"}


def _job_file(folder: Path, media, jobs: str, defaults: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    f = folder / "jobs.toml"
    f.write_text(TINY + defaults + jobs.format(**{k: v for k, v in media.items() if k != "dir"}))
    return f


# two jobs on the same clip: "cut" is split at the scene cut only (chunks of whole shots); "join" is also split
# inside each shot, with warm-up and a cross-faded join window
JOBS = """
[[job]]
name = "cut"
input = "{clip}"
song = "{song}"
output = "out/cut.mp4"
chunk-frames = 8

[[job]]
name = "join"
input = "{clip}"
song = "{song}"
output = "out/join.mp4"
chunk-frames = 5

[[job]]
input = "{still}"
output = "out/still.png"

[[job]]
name = "photos"
input = "{photos}"
output = "out/photos"
"""


@pytest.fixture(scope="module")
def local_run(media, tmp_path_factory):
    """The two jobs rendered by two local CPU workers; the worker running chunk 1 of "join" is SIGKILLed after
    its fourth frame, and the chunk retried on a fresh worker."""
    f = _job_file(tmp_path_factory.mktemp("local"), media, JOBS)
    jobs = batch.load_jobs(f)
    updates = []
    os.environ["DREAMVID_TEST_KILL_TASK"] = "join#1@0=state:3"
    try:
        report = batch.run_local(f, jobs, workers=2, retries=1, on_update=lambda st: updates.append(st.dreamed))
    finally:
        del os.environ["DREAMVID_TEST_KILL_TASK"]
    return f, jobs, report, updates


@pytest.fixture(scope="module")
def reference(local_run, tmp_path_factory):
    """The same clip and settings rendered by one process, with the library's own render."""
    _, jobs, _, _ = local_run
    job = jobs[0]
    out = tmp_path_factory.mktemp("reference") / "ref.mp4"
    render(job.render_options(output=out), job.config, batch.dreamer_for(job.engine))
    return decode_all(out)


def test_two_workers_split_at_the_cut_equal_one_process(local_run, reference):
    f, jobs, report, updates = local_run
    assert report["total"]["failed"] == 0, report
    assert report["total"]["frames_dreamed"] > N
    assert {0, 1} <= {w["id"] for w in report["workers"] if w["frames"]}  # both workers took chunks
    assert all(w["peak_rss_mb"] for w in report["workers"] if w["tasks"])
    # the model is loaded once per worker, for all the chunks and stills of every job it ran
    assert sum(w["tasks"] for w in report["workers"]) == 2 + 4 + 1 + 2  # the killed attempt finished nothing
    assert all(w["models_loaded"] == 1 for w in report["workers"] if w["tasks"]), report["workers"]
    assert updates and updates[-1] == report["total"]["frames_dreamed"]  # progress came through the callback
    out = jobs[0].output
    job_report = json.loads(out.with_name("cut.report.json").read_text())
    assert job_report["cuts"] == [CUT]
    assert [(c["offset"], c["count"], c["lead"]) for c in job_report["chunks"]] == [(0, CUT, 0), (CUT, N - CUT, 0)]
    assert job_report["join_windows"] == []
    assert job_report["audio_seconds"] == pytest.approx(N / 24.0, abs=0.06)  # the song, muxed once
    frames = decode_all(out)
    assert len(frames) == len(reference) == N
    for k, (a, b) in enumerate(zip(frames, reference)):
        assert np.array_equal(a, b), f"frame {k} differs from the one-process render"
    assert (Path(f).parent / "jobs.batch" / "batch.report.json").is_file()
    assert (Path(f).parent / "jobs.batch" / "cut.log").read_text().count("done") >= 3


def test_a_join_inside_a_shot_is_exact_before_its_window_and_cross_fades_in_it(local_run, reference):
    _, jobs, report, _ = local_run
    assert [j["retries"] for j in report["jobs"]] == [0, 1, 0, 0]  # the killed worker's chunk, run again
    assert "worker" in (Path(jobs[1].output).parents[1] / "jobs.batch" / "join.log").read_text()
    rep = json.loads(jobs[1].output.with_name("join.report.json").read_text())
    chunks = rep["chunks"]
    assert chunks[1]["resumed_at_frames"] == [4]  # the retry went on from the killed worker's last frame
    # each 8-frame shot in two chunks of 4; the second of each starts inside the shot, 3 frames early
    assert [(c["offset"] + c["lead"], c["lead"], c["trail"], c["window"]) for c in chunks] == [
        (0, 0, 2, 0), (4, 3, 0, 2), (8, 0, 2, 0), (12, 3, 0, 2)]
    assert rep["join_windows"] == [[2, 4], [10, 12]]
    frames = decode_all(jobs[1].output)
    assert len(frames) == N
    inside = {k for a, b in rep["join_windows"] for k in range(a, b)}
    for k in (0, 1, 8, 9):  # chunks that start at a cut, before their window: what one process dreams
        assert np.array_equal(frames[k], reference[k]), k
    for k in inside:  # the window is a blend of the one-process frame and the next chunk's warm-up frame
        assert not np.array_equal(frames[k], reference[k]), k
    # no seam: the step from frame to frame across a join is no larger than the clip's usual step
    steps = [float(np.abs(frames[k + 1].astype(int) - frames[k]).mean()) for k in range(N - 1) if k + 1 != CUT]
    joins = [float(np.abs(frames[b].astype(int) - frames[b - 1]).mean()) for _, b in rep["join_windows"]]
    assert max(joins) <= 2.0 * float(np.median(steps)) + 1.0, (joins, steps)


def test_stills_and_a_folder_of_stills(local_run, media):
    f, jobs, report, _ = local_run
    assert [j["state"] for j in report["jobs"]] == ["done"] * 4
    still, photos = jobs[2], jobs[3]
    assert (still.kind, photos.kind) == ("still", "stills")
    assert [o.name for _, o in photos.stills] == ["b2.png", "b10.png"]  # natural order
    for src, out in still.stills + photos.stills:
        a, b = read_rgb(src), read_rgb(out)
        assert a.shape == b.shape and float(np.abs(a.astype(int) - b).mean()) > 1.0, out  # dreamed
        side = json.loads(out.with_name(out.name + ".dreamvid.json").read_text())
        assert side["batch"] == (still.fingerprint() if out == still.output else photos.fingerprint())
    st = batch.status(f, jobs)
    assert [(j.state, j.chunks_done, j.chunks) for j in st.jobs.values()] == [
        ("done", 2, 2), ("done", 4, 4), ("done", 1, 1), ("done", 2, 2)]


def test_chunk_plans():
    s = batch.split
    # shots packed up to chunk-frames; a long shot split evenly, warm-up and a window at each inner split
    assert s(30, [4, 10], chunk_frames=8, warmup=3, fade=2) == [
        batch.Chunk(0, 0, 4), batch.Chunk(1, 4, 6), batch.Chunk(2, 10, 7, trail=2),
        batch.Chunk(3, 14, 9, lead=3, trail=2, window=2), batch.Chunk(4, 20, 10, lead=3, window=2)]
    # 10 + 10 frames: the two shots fit one chunk of 20
    assert s(20, [10], chunk_frames=20, warmup=3, fade=2) == [batch.Chunk(0, 0, 20)]
    # every frame covered once: encoded by a chunk, or in a join window
    for chunks in (s(100, [13, 40, 41], chunk_frames=9, warmup=4, fade=3), s(7, [], chunk_frames=2, warmup=0,
                                                                             fade=0)):
        shown = sorted(k for c in chunks for k in range(c.first - c.window, c.end))
        assert shown == list(range(chunks[-1].offset + chunks[-1].count))
    # without feedback (coherence "none") frames are independent: no warm-up, no window
    assert all(c.lead == c.trail == 0 for c in s(30, [], chunk_frames=8, warmup=3, fade=2, join_inside_shots=False))


def test_out_of_memory_halves_the_tiles():
    assert batch.is_oom(MemoryError()) and not batch.is_oom(ValueError("bad"))
    assert batch.is_oom(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert batch.is_oom(type("ResourceExhaustedError", (Exception,), {})("OOM when allocating tensor"))
    cfg = resolve({"dream": {"tile_size": 256, "tile_overlap": 32}}).to_dict()
    t = batch.Task("j", 0, "still", batch.Engine(), cfg, still=("a.png", "b.png"))
    smaller = batch.smaller_tiles(t)
    assert smaller.config["dream"]["tile_size"] == 128 and smaller.config["dream"]["tile_overlap"] == 32
    assert batch.smaller_tiles(batch.smaller_tiles(smaller)) is None  # not below 64 px


def test_a_bad_job_file_is_rejected_whole_naming_each_problem_and_line(media, tmp_path):
    f = _job_file(tmp_path, media, """
[[job]]
input = "{clip}"
output = "out/good.mp4"

[[job]]
input = "missing.mp4"
output = "out/b.mp4"

[[job]]
input = "{clip}"
output = "out/c.mp4"
stepz = 2

[[job]]
input = "{clip}"
output = "out/d.mp4"
steps = -1
""")
    with pytest.raises(batch.BatchFileError) as e:
        batch.load_jobs(f)
    msg = str(e.value)
    assert "\n" not in msg and "3 bad jobs" in msg and "nothing was run" in msg
    assert [ln for ln, _, _ in e.value.problems] == [16, 22, 27]  # the line of each offending key
    assert "missing.mp4 does not exist" in msg and "unknown key 'stepz' (did you mean 'steps'?)" in msg
    assert "dream.steps" in msg
    assert not (tmp_path / "out").exists() and not (tmp_path / "jobs.batch").exists()
    result = CliRunner().invoke(app, ["batch", str(f)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert next(ln for ln in result.output.splitlines() if ln.startswith("error:")).count("line ") == 3
    skipped = []
    kept = batch.load_jobs(f, skip_bad=True, on_skip=lambda *p: skipped.append(p))
    assert [j.name for j in kept] == ["good"] and [p[0] for p in skipped] == [16, 22, 27]


def test_an_output_is_refused_unless_it_is_this_jobs_own(media, tmp_path):
    f = _job_file(tmp_path, media, JOBS[: JOBS.index('[[job]]\nname = "join"')])
    job = batch.load_jobs(f)[0]
    job.output.parent.mkdir()
    job.output.write_bytes(b"someone else's video")
    with pytest.raises(batch.BatchFileError, match="cut.mp4 already exists: pass --overwrite"):
        batch.load_jobs(f)
    # a run killed while publishing left its own output in place: planned with these settings, it is this job's
    plan = batch.plan_job(job, batch.batch_dir_for(f))
    assert plan.cuts == [CUT] and len(plan.chunks) == 2
    assert batch.load_jobs(f)[0].fingerprint() == job.fingerprint()
    # other settings make it someone else's again
    f.write_text(f.read_text().replace("chunk-frames = 8", "chunk-frames = 9"))
    with pytest.raises(batch.BatchFileError, match="already exists"):
        batch.load_jobs(f)


def test_cli_options_are_checked_before_anything_runs(media, tmp_path):
    f = _job_file(tmp_path, media, JOBS)
    runner = CliRunner()
    for args, needle in ((["--ray", "--workers", "2"], "--ray runs on the cluster"), (["--gpus", "a,b"], "--gpus"),
                         (["--ray-address", "auto", "--gpus", "0"], "--ray runs on the cluster"),
                         (["--retries", "-1"], "--retries")):
        result = runner.invoke(app, ["batch", str(f), *args])
        assert result.exit_code == 2 and needle in result.output, result.output
    assert not (tmp_path / "jobs.batch").exists()


def test_a_killed_batch_run_again_finishes_only_what_was_left(media, reference, tmp_path):
    f = _job_file(tmp_path, media, JOBS[: JOBS.index('[[job]]\nname = "join"')])  # the "cut" job alone
    cmd = [sys.executable, "-m", "dreamvid", "batch", str(f), "--workers", "1", "--quiet"]
    env = {**os.environ, "DREAMVID_TEST_KILL_AT": "state:5"}  # a worker SIGKILLs itself after a chunk's 6th frame
    first = subprocess.run(cmd + ["--retries", "0"], env=env, cwd=REPO, capture_output=True, text=True, timeout=300,
                           check=False)
    assert first.returncode == 1, first.stderr
    assert "worker 0 died" in first.stderr and "--retries" in first.stderr
    job = batch.load_jobs(f)[0]
    assert not job.output.exists()
    # --status reads the table off the disk, without running anything
    st = CliRunner().invoke(app, ["batch", str(f), "--status"])
    assert st.exit_code == 0 and "6/8" in st.output, st.output
    done_before = 6
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                           check=False)
    assert again.returncode == 0, again.stderr
    rep = json.loads((tmp_path / "jobs.batch" / "batch.report.json").read_text())
    assert rep["total"]["frames_dreamed"] == N - done_before  # what was left, and nothing twice
    frames = decode_all(job.output)
    assert len(frames) == N and all(np.array_equal(a, b) for a, b in zip(frames, reference))
    # a third run finds the job done and skips it
    third = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                           check=False)
    assert third.returncode == 0 and "0 frames dreamed" in third.stdout, third.stdout + third.stderr


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason='Ray is not installed: pip install "dreamvid[ray]"')
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


@needs("ray")
def test_the_ray_runner_writes_what_the_local_one_does(ray_instance, local_run, media, tmp_path):
    from dreamvid.batch_ray import run_ray

    _, local_jobs, _, _ = local_run
    f = _job_file(tmp_path, media, JOBS)
    jobs = batch.load_jobs(f)
    report = run_ray(f, jobs, retries=1)
    assert report["runner"] == "ray" and report["total"]["failed"] == 0, report
    assert report["total"]["frames_dreamed"] == sum(j["frames_dreamed"] for j in report["jobs"]) > N
    assert all(w["models_loaded"] == 1 for w in report["workers"])
    for a, b in zip(jobs[:2], local_jobs[:2]):
        fa, fb = decode_all(a.output), decode_all(b.output)
        assert len(fa) == len(fb) == N
        assert all(np.array_equal(x, y) for x, y in zip(fa, fb)), a.name
    for a, b in zip(jobs[2:], local_jobs[2:]):
        for (_, x), (_, y) in zip(a.stills, b.stills):
            assert np.array_equal(read_rgb(x), read_rgb(y)), x
