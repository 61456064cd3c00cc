"""Training on PyTorch Lightning (the ``train`` extra): tasks, data builders and
the commands behind ``tg-funcattn`` and the example scripts."""
