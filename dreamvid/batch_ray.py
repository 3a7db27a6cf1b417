"""The Ray runner of ``dreamvid batch``: the same tasks as the local runner, as Ray tasks. The only importer of ray.

Each chunk (or still) is one Ray task asking for one GPU (``num_gpus=1``, so Ray sets its ``CUDA_VISIBLE_DEVICES``)
where the cluster has GPUs, else ``num_cpus`` CPUs. Ray retries a task whose worker died (``max_retries``); the
task resumes from its chunk's work folder, so no finished frame is dreamed twice. Ray reuses its worker processes,
so the model is loaded once per worker (:func:`dreamvid.batch.dreamer_for`). The job file's paths must be readable
and writable at the same place on every node (a shared file system), and dreamvid installed on each node.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .batch import BatchStatus, Job, Task, WorkerStatus, _Run
from .errors import ConfigError, DreamvidError

__all__ = ["run_ray"]


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError('Ray is not installed: pip install "dreamvid[ray]" (or run without --ray)') from None
    return ray


def _task(task: Task) -> dict:
    """Runs in a Ray worker: one chunk or still. Errors come back as values (the driver decides what to do)."""
    from .batch import _peak_rss_mb, is_oom, run_task

    try:
        result = run_task(task)
    except DreamvidError as e:
        return {"error": "user", "message": str(e), "pid": os.getpid()}
    except Exception as e:  # noqa: BLE001 - reported; the driver retries it or fails the job
        kind = "oom" if is_oom(e) else "crash"
        return {"error": kind, "message": f"{type(e).__name__}: {e}", "pid": os.getpid()}
    result["pid"] = os.getpid()
    result["peak_rss_mb"] = _peak_rss_mb()
    from .batch import _DREAMERS

    result["models_loaded"] = len(_DREAMERS)
    return result


def run_ray(job_file: str | os.PathLike, jobs: list[Job], *, address: str | None = None, retries: int = 1,
            overwrite: bool = False, cpus_per_task: float = 1.0, num_cpus: int | None = None,
            on_update: Callable[[BatchStatus], None] | None = None,
            on_warning: Callable[[str], None] | None = None, poll: float = 0.5) -> dict:
    """Run ``jobs`` as Ray tasks and return the batch report (the same as :func:`dreamvid.batch.run_local`'s).

    ``address``: None connects to the cluster ``$RAY_ADDRESS`` names (Ray's own rule), else starts a Ray instance
    on this machine (``num_cpus`` CPUs); ``"auto"`` joins the cluster this machine is a node of;
    ``"ray://host:10001"`` connects to a remote cluster's head. An instance already started in this process
    (``ray.init`` by the caller) is used as it is.
    """
    ray = _import_ray()
    run = _Run(Path(job_file), jobs, overwrite, retries, on_update, on_warning)
    run.frame_events = False
    todo = run.prepare()
    started_here = False
    workers: dict[int, WorkerStatus] = {}
    if todo:
        if not ray.is_initialized():
            kw = {"address": address} if address else ({"num_cpus": num_cpus} if num_cpus else {})
            try:
                ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False, **kw)
            except Exception as e:  # noqa: BLE001 - ConnectionError, ValueError, ... from ray
                where = address or os.environ.get("RAY_ADDRESS") or "a local instance"
                raise ConfigError(f"cannot start or reach Ray at {where}: {str(e).splitlines()[0] if str(e) else e!r}") from None
            started_here = True
        try:
            gpus = ray.cluster_resources().get("GPU", 0)
            resources = {"num_gpus": 1} if gpus else {"num_cpus": cpus_per_task}
            remote = ray.remote(max_retries=retries)(_task)
            pending = {}

            def submit(t: Task):
                ref = remote.options(**resources, name=f"dreamvid:{t.id}").remote(t)
                pending[ref] = t
                run.started(t, "ray")

            for t in todo:
                submit(t)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=poll)
                for ref in ready:
                    t = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 - the worker died more often than max_retries allows
                        run.fail(t.job, f"{t.kind} {t.index}: {type(e).__name__} after {retries} retries: "
                                        f"{str(e).splitlines()[0] if str(e) else ''}")
                        continue
                    err = result.get("error")
                    if err is None:
                        pid = result.get("pid")
                        w = workers.setdefault(pid, WorkerStatus(len(workers), "GPU" if gpus else "CPU", pid=pid))
                        w.frames += result.get("frames", 0)
                        w.peak_rss_mb = max(w.peak_rss_mb or 0.0, result.get("peak_rss_mb") or 0.0)
                        w.models_loaded = result.get("models_loaded", 0)
                        w.tasks += 1
                        run.done(t, result)
                    elif err == "oom":
                        again = run.oom(t, result["message"])
                        if again is not None:
                            submit(again)
                    elif err == "crash":
                        again = run.retry(t, f"failed with {result['message']}")
                        if again is not None:
                            submit(again)
                    else:
                        run.fail(t.job, f"{t.kind} {t.index}: {result['message']}")
                run.update()
        finally:
            if started_here:
                ray.shutdown()
    return run.report("ray", list(workers.values()))
