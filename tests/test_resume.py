"""Resume at any instant, the work-folder lock, and clean shutdown on every error path (dreamvid.pipeline.render).

A kill is proved harmless two ways: in-process, by copying the files on disk at every named instant between two
writes (what a SIGKILL there would leave) and resuming each copy; and for real, by SIGKILLing `dreamvid render`
subprocesses (``DREAMVID_TEST_KILL_AT``), mid-concat and mid-mux included, then resuming. Either way the result
must be byte for byte the video an uninterrupted render writes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dreamvid import fsutil, pipeline, workdir
from dreamvid.errors import OutputError
from dreamvid.pipeline import report_path_for, work_dir_for
from dreamvid.video import count_frames, stream_durations
from tests.media import make_clip
from tests.render_fixtures import FPS, SIZE, decode_all, rdreamer, read_report, render_to, tiny_config  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SEG = 4  # frames per segment in the in-process renders
N10 = 10  # frames of the clip they render: segments of 4 + 4 + 2


@pytest.fixture(scope="module")
def cfg():
    return tiny_config()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume_media")
    return {
        "voiced": make_clip(d / "voiced.mp4", n=N10, size=SIZE, fps=FPS, audio=True),  # its own 440 Hz tone
        "five": make_clip(d / "five.mp4", n=5, size=SIZE, fps=FPS),
        # more than the CLI's 48-frame segment, so a SIGKILLed `dreamvid render` crosses a segment boundary
        "long": make_clip(d / "long.mp4", n=52, size=SIZE, fps=FPS, audio=True),
    }


@pytest.fixture(scope="module")
def reference(clips, rdreamer, cfg, tmp_path_factory):
    """The voiced clip rendered without interruption."""
    out = tmp_path_factory.mktemp("reference") / "out.mp4"
    render_to(out, clips["voiced"], cfg, rdreamer, segment_frames=SEG)
    return out


def _children() -> list[str]:
    """This process's child processes (zombies included), as 'pid name state'."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc")
    me, found = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        state, ppid = text[text.rindex(")") + 2 :].split()[:2]
        if int(ppid) == me and not _is_resource_tracker(stat.parent):
            found.append(f"{stat.parent.name} {name} {state}")
    return found


def _is_resource_tracker(proc: Path) -> bool:
    # multiprocessing's resource tracker: started by the first process spawned in this test session (the batch
    # tests' workers), it lives as long as the test process by design; it is not a render's.
    try:
        return b"resource_tracker" in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def _assert_nothing_left_running(threads_before: set) -> None:
    new = [t.name for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    assert not new, f"threads still running after render returned: {new}"
    assert not _children(), f"child processes left behind: {_children()}"


# -- every instant is resumable ---------------------------------------------------------------------------------
def _copy_state(out: Path, dest: Path) -> None:
    """What is on disk for this render right now: what a SIGKILL at this instant would leave."""
    dest.mkdir()
    work = work_dir_for(out)
    for folder in (work, workdir.trash_for(work)):
        if folder.exists():
            shutil.copytree(folder, dest / folder.name)
    for f in (out, report_path_for(out)):
        if f.exists():
            shutil.copy2(f, dest / f.name)


def test_a_kill_at_any_instant_resumes_to_the_same_video(clips, reference, rdreamer, cfg, tmp_path, monkeypatch):
    out = tmp_path / "run" / "out.mp4"
    snaps: list[tuple[str, Path]] = []

    def snapshot(stage, n=0, *, watch=None):
        dest = tmp_path / f"at{len(snaps):02d}"
        _copy_state(out, dest)
        snaps.append((f"{stage}:{n}", dest))

    monkeypatch.setattr(fsutil, "checkpoint", snapshot)
    render_to(out, clips["voiced"], cfg, rdreamer, segment_frames=SEG)
    monkeypatch.undo()
    assert out.read_bytes() == reference.read_bytes()

    # the order of the writes: each is on disk before the one that relies on it
    def frame(k):
        seg_end = (k + 1) % SEG == 0
        return [f"png:{k}"] + ([f"segment:{k // SEG}"] if seg_end else []) + [f"state:{k}"] + (
            [f"pruned:{k // SEG}"] if seg_end else [])

    expected = [s for k in range(N10) for s in frame(k)]
    expected += ["segment:2", "concat:0", "mux:0", "publish:0", "placed:0", "placed:1", "trashed:0"]
    assert [s for s, _ in snaps] == expected

    for stage, dest in snaps:
        o = dest / "out.mp4"
        if stage == "trashed:0":  # output and report were in place: the render had finished
            with pytest.raises(OutputError, match="already rendered"):
                render_to(o, clips["voiced"], cfg, rdreamer, segment_frames=SEG, resume=True)
        else:
            report = render_to(o, clips["voiced"], cfg, rdreamer, segment_frames=SEG, resume=True)
            assert report["frames"] == N10, stage
            assert json.loads(json.dumps(report)) == read_report(o), stage
        assert o.read_bytes() == reference.read_bytes(), f"killed at {stage}, the resumed video differs"
        assert not work_dir_for(o).exists() and not workdir.trash_for(work_dir_for(o)).exists(), stage
        assert sorted(p.name for p in dest.iterdir()) == ["out.mp4", "out.report.json"], stage


def test_the_old_gap_a_closed_segment_before_its_state_resumes(clips, reference, rdreamer, cfg, tmp_path,
                                                               monkeypatch):
    """The instant issue 10 found: segment closed, state not yet counting its last frame. Its PNGs must still be
    there (the old code deleted them first, and the resume failed on a missing frame)."""
    out = tmp_path / "out.mp4"
    dest = tmp_path / "killed"

    def snapshot(stage, n=0, *, watch=None):
        if (stage, n) == ("segment", 0):
            _copy_state(out, dest)

    monkeypatch.setattr(fsutil, "checkpoint", snapshot)
    render_to(out, clips["voiced"], cfg, rdreamer, segment_frames=SEG)
    monkeypatch.undo()
    work = dest / work_dir_for(out).name
    assert (work / "seg_000000.mp4").is_file()
    assert sorted(p.name for p in (work / "frames").glob("*.png")) == [f"{k:06d}.png" for k in range(SEG)]
    report = render_to(dest / "out.mp4", clips["voiced"], cfg, rdreamer, segment_frames=SEG, resume=True)
    assert report["resumed_at_frames"] == [SEG - 1]
    assert (dest / "out.mp4").read_bytes() == reference.read_bytes()


def test_sigkilled_cli_renders_resume_to_the_same_file(clips, rdreamer, cfg, tmp_path):
    """Real SIGKILLs of `dreamvid render`: at the end of a segment (before the state counts its last frame), then
    of its resume in the middle of the concat, then of that one's resume in the middle of the mux (the ffmpeg it ran
    is orphaned, still writing its temporary file)."""
    clip = clips["long"]
    ref = tmp_path / "ref.mp4"
    render_to(ref, clip, cfg, rdreamer, x264_preset="medium")  # the CLI's encoder settings
    out = tmp_path / "out.mp4"
    cmd = [sys.executable, "-m", "dreamvid", "render", str(clip), "-o", str(out), "--weights", "random",
           "--max-side", "64", "--steps", "1", "--octaves", "1", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k != "DREAMVID_TEST_KILL_AT"}
    for i, at in enumerate(["segment:0", "during-concat:0", "during-mux:0"]):
        proc = subprocess.run(cmd + (["--resume"] if i else []), env={**env, "DREAMVID_TEST_KILL_AT": at}, cwd=REPO,
                              capture_output=True, timeout=600)
        assert proc.returncode == -signal.SIGKILL, f"not killed at {at}: {proc.stderr.decode()[-2000:]}"
        assert not out.exists() and work_dir_for(out).is_dir()
    # the last resume runs here (its model is built already): the killed process's lock must not be in the way
    report = render_to(out, clip, cfg, rdreamer, x264_preset="medium", resume=True)
    assert out.read_bytes() == ref.read_bytes()
    assert json.loads(json.dumps(report)) == read_report(out)
    assert report["frames"] == 52 and report["resumed_at_frames"] == [47, 52]
    assert not work_dir_for(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "out.report.json", "ref.mp4",
                                                          "ref.report.json"]


# -- the work-folder lock ---------------------------------------------------------------------------------------
def test_a_second_render_of_the_same_output_is_refused_while_the_first_runs(clips, reference, rdreamer, cfg,
                                                                            tmp_path):
    out = tmp_path / "out.mp4"
    refused: list[str] = []

    def on_frame(event):
        if event.index == 5:  # the first render is between its segments: a second one must not touch them
            for options in ({"resume": True}, {"overwrite": True}, {}):
                with pytest.raises(OutputError) as e:
                    render_to(out, clips["voiced"], cfg, rdreamer, segment_frames=SEG, **options)
                refused.append(str(e.value))

    render_to(out, clips["voiced"], cfg, rdreamer, segment_frames=SEG, on_frame=on_frame)
    assert len(refused) == 3
    for message in refused:
        assert "another render is writing" in message and str(out) in message and "\n" not in message
    assert out.read_bytes() == reference.read_bytes()  # the first render went on undisturbed
    assert not work_dir_for(out).exists()


def test_the_lock_is_released_when_its_process_dies(clips, rdreamer, cfg, tmp_path):
    out = tmp_path / "out.mp4"
    work = work_dir_for(out)
    work.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)", str(work / "lock")],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == b"locked"
        with pytest.raises(OutputError, match="another render is writing"):
            render_to(out, clips["five"], cfg, rdreamer, segment_frames=SEG)
    finally:
        holder.kill()
        holder.wait()
    report = render_to(out, clips["five"], cfg, rdreamer, segment_frames=SEG)  # the dead holder's lock is gone
    assert report["frames"] == 5 == count_frames(out)


# -- error paths leave nothing running --------------------------------------------------------------------------
def test_an_interrupted_render_leaves_no_thread_or_ffmpeg_running(clips, rdreamer, cfg, tmp_path):
    before = set(threading.enumerate())
    render_to(tmp_path / "ok.mp4", clips["five"], cfg, rdreamer, segment_frames=SEG)
    _assert_nothing_left_running(before)

    def interrupt(event):
        raise KeyboardInterrupt  # Ctrl-C after the first frame, with the other four already decoded ahead

    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        render_to(out, clips["five"], cfg, rdreamer, segment_frames=SEG, on_frame=interrupt)
    _assert_nothing_left_running(before)
    assert not out.exists()
    report = render_to(out, clips["five"], cfg, rdreamer, segment_frames=SEG, resume=True)
    assert report["resumed_at_frames"] == [1] and count_frames(out) == 5


def test_a_render_stopped_before_its_first_frame_leaves_no_work_folder(clips, rdreamer, cfg, tmp_path):
    def interrupt(done, total):
        raise KeyboardInterrupt  # Ctrl-C while the model warms up: nothing finished, nothing to resume

    out = tmp_path / "out.mp4"
    before = set(threading.enumerate())
    with pytest.raises(KeyboardInterrupt):
        pipeline.render(pipeline.RenderOptions(input=clips["five"], output=out), cfg, rdreamer, on_start=interrupt)
    _assert_nothing_left_running(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    report = render_to(out, clips["five"], cfg, rdreamer, resume=True)  # --resume with nothing to resume: starts
    assert report["frames"] == 5 and report["resumed_at_frames"] == []


def test_a_damaged_work_folder_is_one_clear_error_and_leaks_nothing(clips, rdreamer, cfg, tmp_path):
    out = tmp_path / "out.mp4"
    seen = []

    def interrupt_at_6(event):
        seen.append(event)
        if len(seen) == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        render_to(out, clips["voiced"], cfg, rdreamer, segment_frames=SEG, on_frame=interrupt_at_6)
    (work_dir_for(out) / "frames" / "000005.png").unlink()  # a pending frame of the open segment is lost

    before = set(threading.enumerate())
    with pytest.raises(OutputError) as e:
        render_to(out, clips["voiced"], cfg, rdreamer, segment_frames=SEG, resume=True)
    message = str(e.value)
    assert "damaged" in message and "000005.png" in message and "--overwrite" in message and "\n" not in message
    _assert_nothing_left_running(before)
    report = render_to(out, clips["voiced"], cfg, rdreamer, segment_frames=SEG, overwrite=True)
    assert report["frames"] == N10


def test_ctrl_c_hammered_during_the_cleanup_is_not_swallowed_and_leaks_nothing(clips, reference, rdreamer, cfg,
                                                                             tmp_path, monkeypatch):
    """Ctrl-C, then three more while the encoder finishes the frames already dreamed (slow disk): the extra ones
    cut the wait short, every thread and ffmpeg still ends, and the work folder still resumes exactly."""
    first = threading.Event()
    in_render = threading.Event()
    slow_write = workdir.write_image

    def write_slowly(*args, **kwargs):
        time.sleep(0.4)
        return slow_write(*args, **kwargs)

    def hammer():
        first.wait()
        for _ in range(3):
            time.sleep(0.1)
            os.kill(os.getpid(), signal.SIGINT)

    def on_sigint(signum, frame):
        if in_render.is_set():  # a stray signal after render returned must not hit pytest itself
            raise KeyboardInterrupt

    seen = []

    def interrupt_at_6(event):
        seen.append(event)
        if len(seen) == 6:
            first.set()
            raise KeyboardInterrupt

    out = tmp_path / "out.mp4"
    monkeypatch.setattr(workdir, "write_image", write_slowly)
    old_handler = signal.signal(signal.SIGINT, on_sigint)
    sender = threading.Thread(target=hammer)
    sender.start()
    before = set(threading.enumerate())
    in_render.set()
    try:
        with pytest.raises(KeyboardInterrupt):
            render_to(out, clips["voiced"], cfg, rdreamer, segment_frames=SEG, on_frame=interrupt_at_6)
    finally:
        in_render.clear()
        sender.join()
        signal.signal(signal.SIGINT, old_handler)
        monkeypatch.undo()
    _assert_nothing_left_running(before | {sender})
    done = json.loads((work_dir_for(out) / "state.json").read_text())["done"]
    assert done < 6, "the extra Ctrl-C did not cut the wait for the pending frames short"
    render_to(out, clips["voiced"], cfg, rdreamer, segment_frames=SEG, resume=True)
    assert out.read_bytes() == reference.read_bytes()
    assert stream_durations(out)["audio"] > 0 and len(decode_all(out)) == N10
