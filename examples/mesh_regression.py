"""Operator regression on meshes, trained coarse and tested at every resolution.

    python examples/mesh_regression.py                     # geodesic distance, levels 2,3,4
    python examples/mesh_regression.py --target heat
    python examples/mesh_regression.py --dataset mesh --root PATH   # your MeshRegression data

Prints the relative L2 error per test set (the resolution-transfer table for the generated
data) as one JSON line; writes it with the configuration to runs/regression/metrics.json.
Same code as `tg-funcattn train regression`; --help lists every option.
"""
import sys

from tg_funcattn.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "regression", *sys.argv[1:]]))
