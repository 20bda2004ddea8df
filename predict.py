"""Predict: python predict.py source=<run or pretrained dir> input=<.csv|.npz> output=<file>
[batch_size=1024 top_k=1 overwrite=true target=<label column>]. The same as zoo-predict."""

from zoo.app.cli import predict_main

if __name__ == "__main__":
    predict_main()
