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


def synchronize(device="cpu"):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_ms(fns, min_time=1.5, max_reps=9, min_reps=3, device="cpu", slow_s=20.0):
    """Median wall time in ms of each closure of ``fns`` (a dict), after one
    warm-up call each; the closures run round-robin so that drift of a shared
    machine affects them alike.  A closure whose warm-up takes longer than
    ``slow_s`` seconds is not repeated: its warm-up time is its measurement
    (full attention at large N, where one call takes minutes)."""
    times = {name: [] for name in fns}
    fast = {}
    for name, fn in fns.items():
        synchronize(device)
        t = time.perf_counter()
        fn()
        synchronize(device)
        elapsed = time.perf_counter() - t
        if elapsed > slow_s:
            times[name].append(elapsed)
        else:
            fast[name] = fn
    start = time.perf_counter()
    reps = 0
    while fast and (reps < min_reps or
                    (reps < max_reps and time.perf_counter() - start < min_time * len(fast))):
        for name, fn in fast.items():
            synchronize(device)
            t = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - t)
        reps += 1
    return {name: 1e3 * statistics.median(ts) for name, ts in times.items()}


def peak_mib(fn, device="cpu"):
    """Peak of live tensor memory (MiB) allocated while ``fn`` runs, from the
    profiler's allocation and free events on the CPU (independent of the
    allocator), from the caching allocator's statistics on CUDA."""
    from torch.profiler import ProfilerActivity, profile

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2 ** 20

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


def machine(device="cpu"):
    import platform
    text = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if torch.device(device).type == "cuda":
        text += f", {torch.cuda.get_device_name()}"
    return text


def write_results(out, result, report):
    """``out.json`` (the measurements) and ``out.md`` (the report), each
    written atomically (a temporary file renamed into place)."""
    import json

    from tg_funcattn._files import atomic_write

    atomic_write(out + ".json", lambda f: f.write(json.dumps(result, indent=1).encode()))
    atomic_write(out + ".md", lambda f: f.write(report.encode()))
