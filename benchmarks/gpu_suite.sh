#!/usr/bin/env bash
# The scale checks and benchmarks on one CUDA GPU, as one prepared run
# (for a lent device machine: about 10 minutes on an H200).
#
#     bash benchmarks/gpu_suite.sh            # results in benchmarks/results/*_cuda.{md,json,png}
#
# Needs a CUDA build of torch on the machine; installs this package with the
# Triton extra without touching torch.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/results}
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())"
python -m pip install -q --no-deps -e . && python -m pip install -q "triton>=3.0" pytest
# exactness of the Triton kernels on the GPU against the BLAS path and the reference
python -m pytest -q tests/test_scale.py tests/test_segment_ops.py -k "cuda or triton or reference" 2>&1 | tail -5
python benchmarks/bench_kernels.py --device cuda --out "$out/bench_kernels_cuda"
python benchmarks/bench_scale.py --device cuda --sizes 1024,4096,16384,65536,262144,1048576,4194304 \
    --model-sizes 1024,4096,16384,65536,262144,1048576 --sdpa-max 262144 --model-sdpa-max 65536 \
    --ptconv-max 262144 --model-ptconv-max 65536 --big 4194304 --chunk-size 1048576 --out "$out/bench_scale_cuda"
