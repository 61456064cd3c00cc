"""Part segmentation with FuncAttnNet on PyTorch Lightning.

    python examples/segmentation.py                            # SyntheticParts: generated, no download
    python examples/segmentation.py --dataset shapenet --root PATH [--categories Airplane,Chair]
    python examples/segmentation.py --dataset rna --root PATH   # test accuracy on every vertex
    python examples/segmentation.py --dataset rna --root PATH --preset paper_rna   # the authors' model and recipe
    python examples/segmentation.py --devices 4 --strategy ddp --precision bf16-mixed
    python examples/segmentation.py --ckpt runs/segmentation/checkpoints/last.ckpt   # resume

Prints the final test metrics as one JSON line; writes them with the configuration to
runs/segmentation/metrics.json, next to checkpoints/, logs/ and PNG pictures.
Same code as `tg-funcattn train segmentation`; --help lists every option.
"""
import sys

from tg_funcattn.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "segmentation", *sys.argv[1:]]))
