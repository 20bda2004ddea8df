"""Evaluate: python eval.py [seed=7 model.hidden=5 ...] | python eval.py run_dir=<train run dir>

python eval.py mode=summary [model.depth=4 ...]: the model's parameter table, without training.
python eval.py mode=inspect source=<run | checkpoint step | pretrained dir> [paths=[pattern,...]]
python eval.py mode=diff a=<source> b=<source> [paths=[pattern,...]]: saved weights, path by path.
The same as zoo-eval.
"""

from zoo.app.cli import eval_main

if __name__ == "__main__":
    eval_main()
