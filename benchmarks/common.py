"""Timing and memory helpers shared by the benchmarks."""
import os
import statistics
import sys
import time

import torch

#: glibc returns every large block to the OS on free, so each op of a big CPU
#: tensor program page-faults its fresh output (about 2x slower here).  The
#: benchmarks re-exec themselves with these settings, which apply to every
#: method measured alike; ``--system-malloc`` keeps the defaults.
MALLOC_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}


def tune_allocator(argv):
    if "--system-malloc" in argv or all(os.environ.get(k) == v for k, v in MALLOC_ENV.items()):
        return
    env = dict(os.environ, **MALLOC_ENV)
    os.execve(sys.executable, [sys.executable] + argv, env)


def time_ms(fns, min_time=1.5, max_reps=9, min_reps=3):
    """Median wall time in ms of each closure of ``fns`` (a dict), after one
    warm-up call each; the closures run round-robin so that drift of a shared
    machine affects them alike."""
    times = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    start = time.perf_counter()
    reps = 0
    while reps < min_reps or (reps < max_reps and time.perf_counter() - start < min_time * len(fns)):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
        reps += 1
    return {name: 1e3 * statistics.median(ts) for name, ts in times.items()}


def peak_mib(fn):
    """Peak of live tensor memory (MiB) allocated while ``fn`` runs, from the
    profiler's allocation and free events (independent of the allocator)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak / 2 ** 20


def fwd_bwd(module, *inputs):
    """A closure running forward and backward of ``module`` on ``inputs``."""
    def run():
        for p in module.parameters():
            p.grad = None
        for t in inputs:
            if isinstance(t, torch.Tensor) and t.requires_grad:
                t.grad = None
        module(*inputs).sum().backward()
    return run


def machine():
    import platform
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")
