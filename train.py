"""Train a zoo model: python train.py model=deep_nested [key=value ...] (the same as zoo-train)."""

from zoo.app.cli import train_main

if __name__ == "__main__":
    train_main()
