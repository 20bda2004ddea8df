"""Make what `experiment=finetune_digits` starts from when it is given nothing: a small mlp
trained on the digits (`zoo/recipes/finetune_digits/digits_mlp/`, as README recipe (a) trains
`runs/digits`) and the digits' parity on 300 of the images (`parity.npz`, as its make_parity.py).

    .venv/bin/python tools/make_finetune_digits.py   # needs the `data` extra (scikit-learn)

The files are committed: they are the recipe's inputs, not results of the tests.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

import zoo

RECIPE = Path(__file__).resolve().parents[1] / "zoo" / "recipes" / "finetune_digits"


def main() -> None:
    RECIPE.mkdir(parents=True, exist_ok=True)
    x, digit = load_digits(return_X_y=True)
    # 64 features as the digits (pixel intensities 0..16, so uint8 holds them); 2 classes
    parity = (digit[:300] % 2).astype(np.uint8)
    np.savez(RECIPE / "parity.npz", x=x[:300].astype(np.uint8), y=parity)
    with tempfile.TemporaryDirectory() as run_dir:
        metrics = zoo.train(
            ["model=mlp", "data=digits", "trainer.steps=500", "trainer.checkpoints=false"],
            run_dir=run_dir,
        )
        shutil.rmtree(RECIPE / "digits_mlp", ignore_errors=True)
        shutil.copytree(Path(run_dir) / "model", RECIPE / "digits_mlp")
    print(f"{RECIPE}: digits_mlp/ (val_accuracy {metrics['val_accuracy']:.3f}), parity.npz")


if __name__ == "__main__":
    main()
