"""Generate: python generate.py source=<checkpoint | pretrained | run dir> prompt="..." [k=v ...]

The same as zoo-generate; `python generate.py --help` lists the settings.
"""

from zoo.app.generate import main

if __name__ == "__main__":
    main()
