#!/usr/bin/env bash
# The scale checks and benchmarks on one CUDA GPU, as one prepared run
# (for a lent device machine: about 10 minutes on an H200).
#
#     bash benchmarks/gpu_suite.sh                      # results in benchmarks/results/*_cuda.{md,json}
#     GPU_SUITE_DRY_RUN=1 bash benchmarks/gpu_suite.sh  # every step on this CPU at tiny sizes
#                                                       # (Triton through TRITON_INTERPRET=1), a few minutes
#
# Needs a CUDA build of torch on the machine; installs this package with the
# Triton extra without touching torch.  The dry run installs nothing and writes
# its results to $OUT (default: a temporary folder), so that it checks the
# suite, not the numbers; tests/benchmarks/test_gpu_suite.py runs it in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
dry=${GPU_SUITE_DRY_RUN:-}

if [[ -n $dry ]]; then
    device=cpu
    out=${OUT:-$(mktemp -d)}
    export TRITON_INTERPRET=1
    kernels=(--sizes 256 --sum-sizes 512)
    scale=(--sizes 1024,2048 --model-sizes 1024 --ks 8,16 --k-nodes 1024 --sdpa-max 2048
           --model-sdpa-max 1024 --ptconv-max 2048 --model-ptconv-max 1024 --big 4096 --chunk-size 2048)
else
    device=cuda
    out=${OUT:-benchmarks/results}
    python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())"
    python -m pip install -q --no-deps -e . && python -m pip install -q "triton>=3.0" pytest
    kernels=()
    scale=(--sizes 1024,4096,16384,65536,262144,1048576,4194304
           --model-sizes 1024,4096,16384,65536,262144,1048576 --sdpa-max 262144 --model-sdpa-max 65536
           --ptconv-max 262144 --model-ptconv-max 65536 --big 4194304 --chunk-size 1048576)
fi

# exactness of the segment products (Triton against the BLAS path and the reference) and of
# the layer on the device; on the CPU the CUDA tests skip and Triton runs interpreted
python -m pytest -q -p no:cacheprovider tests/ops/test_triton.py tests/ops/test_segment.py \
    tests/ops/test_dispatch.py tests/nn/test_streaming.py 2>&1 | tail -5
python benchmarks/bench_kernels.py --device "$device" "${kernels[@]}" --out "$out/bench_kernels_$device"
python benchmarks/bench_scale.py --device "$device" "${scale[@]}" --out "$out/bench_scale_$device"
