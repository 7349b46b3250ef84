"""Where the points are built: inline (one job), a local process pool, or Ray tasks.

All three call worker.build_point and hand each result to `done(name, result)` as it arrives, so that a
finished point is saved before the next one ends (an interrupted sweep loses only the points in flight).
The pool spawns its workers (TensorFlow is not fork-safe); Ray is imported only here, when asked for.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from edgekiln.compiler.errors import EdgekilnError, Terminated, first_line
from edgekiln.compiler.sweep import ray_reaper, worker

Task = tuple[str, dict[str, Any]]  # (point name, recipe as a dict)
Done = Callable[[str, worker.PointResult], None]


def threads_per_worker(jobs: int) -> int:
    return max(1, (os.cpu_count() or 1) // jobs)


def _lost(why: str) -> worker.PointResult:
    """A point whose worker or task was lost (not a point that cannot be built): the next run tries it again."""
    return worker.PointResult({"error": why, "retry": True})


def run(tasks: list[Task], jobs: int, executor: str, address: str | None, started: Callable[[str], None],
        done: Done) -> None:
    if not tasks:
        return
    if executor == "ray":
        _ray(tasks, jobs, address, started, done)
    elif jobs == 1:
        for name, recipe in tasks:
            started(name)
            done(name, worker.build_point(recipe))
    else:
        _pool(tasks, jobs, started, done)


def _pool(tasks: list[Task], jobs: int, started: Callable[[str], None], done: Done) -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=worker.start_worker,
                             initargs=(threads_per_worker(jobs), os.getpid())) as pool:
        futures = {}
        for name, recipe in tasks:
            futures[pool.submit(worker.build_point, recipe)] = name
            started(name)
        try:
            for future in as_completed(futures):
                try:
                    result = future.result()
                except BrokenProcessPool as exc:  # a worker was killed: this point is retried by the next run
                    result = _lost(f"the worker building it died ({first_line(exc)})")
                done(futures[future], result)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (errors.Terminated): the points in flight are not saved
            _stop_workers(pool)
            raise


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """End the workers now: leaving the `with` would otherwise wait for the points they are building (minutes).
    The executor keeps its processes in a private dict; its public shutdown() cannot stop a running task."""
    for process in list(getattr(pool, "_processes", {}).values()):
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _ray(tasks: list[Task], jobs: int, address: str | None, started: Callable[[str], None], done: Done) -> None:
    try:
        import ray
    except ImportError:
        raise EdgekilnError("--executor ray needs Ray", "pip install 'edgekiln[ray]'") from None
    env = {"env_vars": worker.thread_env(threads_per_worker(jobs) if address is None else 1)}
    local = address is None
    on_sigterm = signal.getsignal(signal.SIGTERM)
    watcher = ray_reaper.start() if local else None  # a local Ray's processes end with this one, however it ends
    ray.init(address=address, num_cpus=jobs if local else None, include_dashboard=False, log_to_driver=False,
             runtime_env=env, configure_logging=False)
    got_sigterm = threading.Event()

    def sigterm(signum: int, frame: object) -> None:
        got_sigterm.set()
        raise Terminated

    main = threading.current_thread() is threading.main_thread()
    if main:  # ray.init put sys.exit there, which skips the cleanups
        signal.signal(signal.SIGTERM, sigterm)
    try:
        remote = ray.remote(num_cpus=1, max_retries=1)(worker.build_point)  # a lost node's task runs again
        pending = {}
        for name, recipe in tasks:
            pending[remote.remote(recipe)] = name
            started(name)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                name = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    result = _lost(f"the Ray task failed ({first_line(exc)})")
                done(name, result)
    except KeyboardInterrupt:
        if got_sigterm.is_set():  # Ray's wait turns what the handler raised into a KeyboardInterrupt
            raise Terminated from None
        raise
    finally:
        ray.shutdown()
        ray_reaper.stop(watcher)
        if main:
            signal.signal(signal.SIGTERM, on_sigterm)
