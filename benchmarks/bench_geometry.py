"""Time and memory of Laplacian, mass and k = 64 / 128 eigenpairs for meshes and
point clouds of 10k, 50k and 200k vertices.

    python benchmarks/bench_geometry.py            # about 10 minutes on 2 cores
    python benchmarks/bench_geometry.py --sizes 10000

Shapes: a bumpy torus (minor radius modulated by 5% bumps), as a regular grid
mesh of exactly N vertices, and as N points sampled i.i.d. uniformly by area on
the same surface.  Every (shape, N, k) runs in its own process; memory is the
peak resident set size of that process above its size before the computation.
Writes ``benchmarks/results/bench_geometry.md``.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

GRIDS = {10000: (125, 80), 50000: (250, 200), 200000: (500, 400)}


def torus(nu, nv, R=1.0, r=0.35, bump=0.05):
    u = np.linspace(0, 2 * np.pi, nu, endpoint=False)
    v = np.linspace(0, 2 * np.pi, nv, endpoint=False)
    U, V = np.meshgrid(u, v, indexing="ij")
    rr = r * (1 + bump * np.sin(5 * U) * np.cos(3 * V))
    pos = np.stack([(R + rr * np.cos(V)) * np.cos(U), (R + rr * np.cos(V)) * np.sin(U),
                    rr * np.sin(V)], -1).reshape(-1, 3)
    i, j = np.arange(nu)[:, None], np.arange(nv)[None, :]
    a, b = i * nv + j, ((i + 1) % nu) * nv + j
    c, d = ((i + 1) % nu) * nv + (j + 1) % nv, i * nv + (j + 1) % nv
    face = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return pos, face.T


def sample_surface(pos, face, n, seed=0):
    rng = np.random.default_rng(seed)
    a, b, c = pos[face[0]], pos[face[1]], pos[face[2]]
    areas = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    chosen = rng.choice(len(areas), n, p=areas / areas.sum())
    r1, r2 = np.sqrt(rng.uniform(size=(n, 1))), rng.uniform(size=(n, 1))
    return (1 - r1) * a[chosen] + r1 * (1 - r2) * b[chosen] + r1 * r2 * c[chosen]


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def measure(kind, n, k):
    from tg_funcattn.geometry import eigenbasis, laplacian

    pos, face = torus(*GRIDS[n]) if n in GRIDS else torus(int(np.sqrt(n * 1.25)), int(np.sqrt(n / 1.25)))
    if kind == "cloud":
        pos, face = sample_surface(pos, face, len(pos)), None
    before = rss_mib()
    t0 = time.perf_counter()
    L, mass = laplacian(pos, face)
    t1 = time.perf_counter()
    evals, evecs = eigenbasis(L, mass, k)
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"kind": kind, "N": len(pos), "k": k, "laplacian_s": t1 - t0, "eigen_s": t2 - t1,
            "total_s": t2 - t0, "peak_mib": peak - before, "lambda_1": float(evals[1])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000,200000")
    parser.add_argument("--ks", default="64,128")
    parser.add_argument("--kinds", default="mesh,cloud")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "bench_geometry"))
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # internal: kind N k
    args = parser.parse_args()
    if args.one:
        kind, n, k = args.one
        print(json.dumps(measure(kind, int(n), int(k))), flush=True)
        return

    from common import machine  # noqa: E402

    rows = []
    for kind in args.kinds.split(","):
        for n in map(int, args.sizes.split(",")):
            for k in map(int, args.ks.split(",")):
                cmd = [sys.executable, os.path.abspath(__file__), "--one", kind, str(n), str(k)]
                result = subprocess.run(cmd, capture_output=True, text=True)
                if result.returncode != 0:
                    raise SystemExit(f"{kind} N={n} k={k} failed:\n{result.stderr[-3000:]}")
                rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
                print(json.dumps({key: round(v, 2) if isinstance(v, float) else v
                                  for key, v in rows[-1].items()}), flush=True)
    lines = [f"Machine: {machine()}. Bumpy torus; mesh = grid triangulation, cloud = i.i.d. "
             "area-uniform samples; float64; METIS ordering "
             f"{'on' if _has_metis() else 'off (pymetis not installed)'}.", "",
             "| shape | N | k | Laplacian + mass (s) | eigenpairs (s) | total (s) | peak memory (MiB) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['kind']} | {r['N']} | {r['k']} | {r['laplacian_s']:.2f} | {r['eigen_s']:.2f} "
                     f"| {r['total_s']:.2f} | {r['peak_mib']:.0f} |")
    target = [r for r in rows if r["kind"] == "mesh" and r["N"] == 50000 and r["k"] == 128]
    if target:
        lines += ["", f"Target: 50k-vertex mesh, k = 128 in {target[0]['total_s']:.1f} s (target < 15 s)."]
    report = "\n".join(lines) + "\n"
    print("\n" + report)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".md", "w") as f:
        f.write(report)
    with open(args.out + ".json", "w") as f:
        json.dump({"machine": machine(), "rows": rows}, f, indent=1)


def _has_metis():
    from tg_funcattn._optional import available
    return available("pymetis")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
