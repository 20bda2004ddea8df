"""Export: python export.py source=<run or pretrained dir> out=<dir> [format=stablehlo|onnx
platforms=[cpu,cuda] overwrite=true]. The same as zoo-export."""

from zoo.app.cli import export_main

if __name__ == "__main__":
    export_main()
