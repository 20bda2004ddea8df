"""A table of bad inputs (values, keys, files, directories, checkpoints) through the command line:
each exits non-zero with one line naming what is wrong, no traceback, quickly and in bounded memory.

The cases run through `zoo-train` / `zoo-eval`'s own functions (`zoo.app.cli.train_app`, what
`zoo-train` runs short of ending the process, and `zoo.app.cli.eval_main`) with `sys.argv` set, in
one child process, so the interpreter and JAX start once for all of them; tests elsewhere run
the scripts themselves as subprocesses (signals, the venv from the wheel). Signals are in
tests/e2e/test_signals.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

DRIVER = textwrap.dedent(
    """
    import contextlib, io, json, resource, sys, time, traceback
    from zoo.app import cli

    results = []
    for app, args in json.load(open(sys.argv[1])):
        sys.argv = [app + ".py", *args]
        err = io.StringIO()
        start = time.perf_counter()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                mains = {"train": cli.train_app, "eval": cli.eval_main}
                mains |= {"predict": cli.predict_main, "export": cli.export_main}  # issue 25
                code = mains[app]()
            code = code if isinstance(code, int) else 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:
            code, err = "escaped", io.StringIO(traceback.format_exc())
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        results.append([code, err.getvalue(), time.perf_counter() - start, rss])
    print(json.dumps(results))
    """
)


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> list[tuple[str, list[str], str]]:
    """(app, arguments, a fragment the one error line must hold)."""
    d = tmp_path_factory.mktemp("fuzz")
    x = np.random.default_rng(0).normal(size=(40, 3))
    files = {
        "text.npz": "not a zip",
        "empty.csv": "",
        "words.csv": "a,b,price\n1,2,3\n4,x,6\n",
        "ragged.csv": "a,b,price\n1,2,3\n4,5\n",
        "inf.csv": "a,b,price\n1,2,3\n4,inf,6\n",
        "nohead.csv": "a,b\n1,2\n",
        "bad.yaml": "seed: [1, 2",
    }
    for name, text in files.items():
        (d / name).write_text(text)
    write_npz(d / "noy.npz", x=x)
    write_npz(d / "x1d.npz", x=x[:, 0], y=x[:, 1])
    write_npz(d / "nan.npz", x=np.where(x > 2, np.nan, x), y=x[:, 0])
    write_npz(d / "huge_label.npz", x=x, y=np.r_[np.arange(39), 10**7])
    write_npz(d / "obj.npz", x=np.array([[1, "a"]], dtype=object), y=np.zeros(1))
    (d / "truncated.npz").write_bytes(write_npz(d / "whole.npz", x=x, y=x[:, 0]).read_bytes()[:-40])
    with zipfile.ZipFile(d / "notnpy.npz", "w") as z:
        z.writestr("x.npy", "not an array")
        z.writestr("y.npy", "not an array")
    write_npz(d / "big.npz", x=np.full((4, 3), 1e300), y=np.zeros(4))
    (d / "adir").mkdir()
    (d / "afile").write_text("x")
    earlier = d / "earlier"
    earlier.mkdir()
    (earlier / "metrics.jsonl").write_text('{"step": 10, "train_loss": 1.0}\n')
    damaged = d / "damaged"
    (damaged / ".hydra").mkdir(parents=True)
    (damaged / ".hydra" / "config.yaml").write_text("- 1\n- 2\n")
    badyaml = d / "badyaml"
    badyaml.mkdir()
    (badyaml / "config.yaml").write_text("seed: [1, 2")
    zero = d / "zero" / "model"
    zero.mkdir(parents=True)
    (zero / "config.json").symlink_to("/dev/zero")
    (zero / "model.safetensors").write_bytes(b"")
    ckpt = d / "ckpt"
    (ckpt / "checkpoints" / "100").mkdir(parents=True)
    (ckpt / "checkpoints" / "100" / "junk").write_text("junk")

    t = "train"
    # (the unknown keys and bad values of tests/e2e/test_command_line.py's tables are not repeated)
    values = [
        ("model.depth=100000000", "model.depth=100000000 is invalid"),
        ("model.hidden=-3", "model.hidden=-3 is invalid"),
        ("model.hidden=1000000000", "model.hidden=1000000000 is invalid"),
        ("model.out_features=0", "model.out_features=0 is invalid"),
        ("model.out_features=1000000000", "model.out_features=1000000000 is invalid"),
        ("model.in_features=0", "model.in_features=0 is invalid"),
        ("model=nope", "Could not find 'model/nope'"),
        ("model=mlp model.widths=[]", "model.widths=[] is invalid"),
        ("model=mlp model.widths=[0]", "model.widths=[0] is invalid"),
        ("model=mlp model.widths=[1000000000]", "model.widths=[1000000000] is invalid"),
        ("model=mlp model.dropout=1.5", "model.dropout=1.5 is invalid"),
        ("model=transformer", "data.in_features cannot be resolved"),
        ("model=transformer data=sequence model.num_heads=5", "divisible by model.num_heads=5"),
        ("optim.lr=0", "optim.lr=0.0 is invalid"),
        ("optim.lr=1e999", "optim.lr=inf is invalid"),
        ("optim.lr=fast", "optim.lr=fast"),
        ("optim=nope", "Could not find 'optim/nope'"),
        ("optim.b1=1.5", "optim.b1=1.5 is invalid"),
        ("data=npz", "data.path is required"),
        ("data.n_train=0", "data.n_train=0 is invalid"),
        ("data.n_train=10000000000", "data.n_train=10000000000 is invalid"),
        ("data.noise=-1", "data.noise=-1.0 is invalid"),
        ("data.val_fraction=1.5", "unknown key data.val_fraction"),
        ("data=csv data.path=x.csv data.val_fraction=1.5", "data.val_fraction=1.5 is invalid"),
        ("data=npz data.path=x.npz data.task=maybe", "data.task='maybe' is invalid"),
        ("trainer.steps=-1", "trainer.steps=-1 is invalid"),
        ("trainer.steps=100000000000000", "trainer.steps=100000000000000 is invalid"),
        ("trainer.batch_size=100000000000", "trainer.batch_size=100000000000 is invalid"),
        ("trainer.log_every=0", "trainer.log_every=0 is invalid"),
        ("trainer.devices=abc", "trainer.devices='abc' is invalid"),
        ("trainer.devices=64", "trainer.devices=64 but this process sees only"),
        ("trainer.coordinator_address=nohost", "trainer.coordinator_address='nohost'"),
        ("+trainer.step=100", "did you mean trainer.steps?"),
        ("seed=-1", "seed=-1 is invalid"),
        ("seed=abc", "seed=abc"),
        ("logger=nope", "Could not find 'logger/nope'"),
        ("model._target_=os.system", "model._target_='os.system' is not allowed"),
    ]
    data_files = [
        (f"data=npz data.path={d}/missing.npz", "missing.npz: no such file"),
        (f"data=npz data.path={d}/text.npz", "text.npz: not an .npz file"),
        (f"data=npz data.path={d}/truncated.npz", "truncated.npz"),
        (f"data=npz data.path={d}/obj.npz", "obj.npz"),
        (f"data=npz data.path={d}/notnpy.npz", "notnpy.npz"),
        (f"data=npz data.path={d}/noy.npz", "noy.npz: missing array 'y'"),
        (f"data=npz data.path={d}/x1d.npz", "x1d.npz: x has shape (40,)"),
        (f"data=npz data.path={d}/nan.npz", "nan.npz"),
        (f"data=npz data.path={d}/big.npz", "big.npz"),
        (
            f"data=npz data.path={d}/huge_label.npz data.task=classification",
            "huge_label.npz",
        ),
        (f"data=npz data.path={d}/adir", "adir: not a file"),
        (f"data=csv data.path={d}/empty.csv data.target=price", "empty.csv: the file is empty"),
        (f"data=csv data.path={d}/words.csv data.target=price", "'x' is not a number"),
        (f"data=csv data.path={d}/ragged.csv data.target=price", "line 3 has 2 fields"),
        (f"data=csv data.path={d}/inf.csv data.target=price", "is not finite"),
        (f"data=csv data.path={d}/nohead.csv data.target=price", "no column 'price'"),
        (f"data=csv data.path={d}/words.csv", "data.target is required"),
    ]
    surgery = [
        (f"init.from={d}/missing", "init.from"),
        (f"init.from={d}/afile", "init.from"),
        (f"init.from={damaged}", "init.from"),
        ("optim.freeze=[nothing/here]", "optim.freeze"),
        ("optim.lr_mult={middle:0}", "optim.lr_mult"),
        ("init.exclude=[head]", "init"),
    ]
    directories = [
        (f"hydra.run.dir={d}/afile", "afile"),
        (f"hydra.run.dir={d}/afile/below", "afile"),
        (f"hydra.run.dir={earlier}", "earlier run"),
        (f"hydra.run.dir={ckpt} trainer.resume=true", "checkpoint"),
    ]
    evals = [
        (f"run_dir={d}/missing", "is not a directory"),
        (f"run_dir={d}/afile", "is not a directory"),
        (f"run_dir={damaged}", "not a train run's config"),
        (f"run_dir={badyaml}", "unreadable config"),
        ("x=[1,2]", "x has 2 values but model.in_features=4"),
        ("mode=bogus", "mode='bogus' is invalid"),
        (f"mode=summary run_dir={d}/zero", "config.json"),
        ("+eval.bogus=1", "unknown key eval"),
        ("mode=inspect", "source"),
        (f"mode=inspect source={d}/missing", "missing"),
        (f"mode=diff a={d}/missing b={d}/afile", "missing"),
    ]
    table = [
        (t, [*a.split(), f"hydra.run.dir={d}/run{i}"], m)
        for i, (a, m) in enumerate(values + data_files + surgery)
    ]
    table += [(t, a.split(), m) for a, m in directories]
    table += [("eval", a.split(), m) for a, m in evals]

    # issue 19: optimizer groups and data files
    write_npz(d / "val_classes.npz", x=x, y=np.arange(40) % 3, x_val=x[:8], y_val=np.arange(8) % 7)
    issue19_files = {
        "dup.csv": "y,a,y\n1,2,3\n0,5,6\n",
        "underscore.csv": "a,y\n1_000,1\n2,0\n",
        "arabic.csv": "a,y\n1,\u0661\n2,0\n",
        "fullwidth.csv": "a,y\n\uff11,1\n2,0\n",
        "nbsp.csv": "a,y\n\u00a01,1\n2,0\n",
    }
    for name, text in issue19_files.items():
        (d / name).write_text(text, encoding="utf-8")
    issue19 = [
        ("optim.freeze=[**]", "optim.freeze=[**] freezes all 2 parameter tensors"),
        (f"data=npz data.path={d}/val_classes.npz", "y_val holds labels up to 6"),
        (f"data=csv data.path={d}/dup.csv data.target=y", "column 'y' appears twice"),
        (f"data=csv data.path={d}/underscore.csv data.target=y", "'1_000' is not a plain number"),
        (f"data=csv data.path={d}/arabic.csv data.target=y", "line 2, column 'y'"),
        (f"data=csv data.path={d}/fullwidth.csv data.target=y", "line 2, column 'a'"),
        (f"data=csv data.path={d}/nbsp.csv data.target=y", "is not a plain number"),
    ]
    table += [
        (t, [*a.split(), f"hydra.run.dir={d}/i19run{i}"], m) for i, (a, m) in enumerate(issue19)
    ]

    # issue 19: hostile files and patterns
    def pretrained(name: str, header: dict, data: bytes = b"", depth: int = 1) -> Path:
        """A pretrained directory with a hand-written safetensors header."""
        directory = d / "hostile" / name
        directory.mkdir(parents=True)
        kwargs = {"in_features": 4, "hidden": 8, "depth": depth}
        config = {"format_version": 1, "model": "deep_nested", "kwargs": kwargs}
        (directory / "config.json").write_text(json.dumps(config))
        raw = json.dumps(header).encode()
        (directory / "model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw + data)
        return directory

    def tensor(shape: list[int], begin: int = 0, end: int = 0) -> dict:
        return {"dtype": "F32", "shape": shape, "data_offsets": [begin, end]}

    def run_dir(name: str, config: str | None = None) -> Path:
        directory = d / "hostile" / name
        directory.mkdir(parents=True)
        if config is None:
            os.mkfifo(directory / "config.yaml")  # a reader that blocks would hang here
        else:
            (directory / "config.yaml").write_text(config)
        return directory

    bomb = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]  # 9**9 strings in 415 bytes
    bomb += [
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    bomb += ["model: *i", "data: *i", ""]
    small = pretrained(
        "small",
        {"middle.inner.kernel": tensor([4, 8], 0, 128), "middle.inner.bias": tensor([8], 128, 160)},
        bytes(160),
    )
    tall = pretrained("tall", {"blocks.inner.kernel": tensor([3_000_000, 0])}, depth=3)
    wide = pretrained("wide", {"blocks.inner.kernel": tensor([0, 2**63])}, depth=3)
    many = "/".join(["**"] * 1200 + ["nothing"])  # 200 took 97 s, 1,200 a RecursionError
    table += [
        ("eval", [f"run_dir={run_dir('bomb', chr(10).join(bomb))}"], "holds a YAML alias (*a)"),
        ("eval", [f"run_dir={run_dir('deep', '[' * 50_000)}"], "nested deeper than 32 levels"),
        ("eval", [f"run_dir={run_dir('fifo')}"], "config.yaml: not a regular file"),
        ("eval", ["mode=inspect", f"source={tall}"], "3000000 layers on its stacked axis"),
        ("eval", ["mode=inspect", f"source={wide}"], "[0, 9223372036854775808]: its nonzero"),
        ("eval", ["mode=inspect", f"source={small}", f"paths=[{many}]"], "paths pattern '**/"),
        ("eval", ["mode=diff", f"a={small}", f"b={small}", f"paths=[{many}]"], "paths pattern"),
        (t, [f"optim.freeze=[{many}]", f"hydra.run.dir={d}/h0"], "optim.freeze pattern '**/"),
        (
            t,
            [f"init.from={small}", f"init.exclude=[{many}]", f"hydra.run.dir={d}/h1"],
            "init.exclude pattern '**/",
        ),
        (
            t,
            [f"init.from={small}", "init.exclude=[**]", f"hydra.run.dir={d}/h2"],
            "no tensor would be loaded (0 loaded, 0 missing, 0 unexpected, 0 mismatched, 2 ex",
        ),
    ]

    # issue 19: logger destinations
    loggers = [
        ("logger=null", "logger=null: a config group cannot be set to null"),
        ("logger=csv logger.csv.filename=../victim/metrics.jsonl", "inside the run directory"),
        (f"logger=csv logger.csv.filename={d}/elsewhere.csv", "no absolute path"),
        ("logger=csv logger.csv.filename=metrics.jsonl", "the run itself writes 'metrics.jsonl'"),
        ("logger=csv logger.csv.filename=Checkpoints/x.csv", "the run itself writes"),
        ("logger=csv logger.csv.filename=", "must name a path inside the run directory"),
        ("logger=csv logger.csv.filename=.", "hidden part"),
        ("logger=tensorboard logger.tensorboard.subdir=metrics.jsonl", "the run itself writes"),
        ("logger=tensorboard logger.tensorboard.subdir=/tmp", "no absolute path"),
        (
            "logger=[csv,tensorboard] logger.csv.filename=tb logger.tensorboard.subdir=tb/x",
            "collide",
        ),
        ("logger=mlflow logger.mlflow.tracking_uri=", "tracking_uri='' is invalid"),
        (f"logger=mlflow logger.mlflow.tracking_uri=sqlite:///{d}/afile/x.db", "under the file"),
        (f"logger=mlflow logger.mlflow.tracking_uri={d}/afile", "afile is a file"),
    ]
    blocked = d / "tb_blocked"  # a file where TensorBoard's folder goes
    blocked.mkdir()
    (blocked / "tb").write_text("x")
    loggers.append(
        (f"logger=tensorboard logger.tensorboard.subdir=tb hydra.run.dir={blocked}", "tb is a file")
    )
    own = f"sqlite:///{d}/own/metrics.jsonl hydra.run.dir={d}/own"  # the store onto the run's log
    loggers.append((f"logger=mlflow logger.mlflow.tracking_uri={own}", "is in the run directory"))
    table += [
        (t, [*a.split(), *([] if "hydra.run.dir" in a else [f"hydra.run.dir={d}/logger{i}"])], m)
        for i, (a, m) in enumerate(loggers)
    ]

    # issue 19: checkpoints and signals
    another = d / "another"  # a run's directory: its lock file stays after it ends
    (another / "checkpoints" / "20").mkdir(parents=True)
    (another / ".lock").write_text("")
    checkpoint_dirs = [
        (f"trainer.ckpt_dir={another}/checkpoints trainer.resume=true seed=7", "another run"),
        (f"trainer.ckpt_dir={another}", "lies in the directory of another run"),
        (f"trainer.ckpt_dir={another}/checkpoints/20/sub", "another run"),
        (f"trainer.ckpt_dir={d}/afile", "afile: is a file, not a directory"),
        (f"trainer.ckpt_dir={d}/afile/below", "lies under a file"),
        ("trainer.ckpt_every=0", "trainer.ckpt_every=0 is invalid"),
        ("trainer.ckpt_every_seconds=-1", "trainer.ckpt_every_seconds=-1.0 is invalid"),
    ]
    table += [
        (t, [*a.split(), f"hydra.run.dir={d}/ckpt_run{i}"], m)
        for i, (a, m) in enumerate(checkpoint_dirs)
    ]

    # issue 21: published (Hugging Face) checkpoint directories, damaged one way each
    import shutil

    from safetensors.numpy import load_file, save_file

    lm = Path(__file__).resolve().parents[1] / "fixtures" / "lm"

    def published(name: str, fixture: str = "llama_gqa", config=None, tensors=None) -> Path:
        copy = d / f"hf_{name}"
        shutil.copytree(lm / fixture, copy)
        if config is not None:
            edited = json.loads((copy / "config.json").read_text())
            (copy / "config.json").write_text(json.dumps(config(edited) or edited))
        if tensors is not None:
            weights = load_file(copy / "model.safetensors")
            tensors(weights)
            save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
        return copy

    bert = published("bert", config=lambda c: c.update(model_type="bert"))
    yarn = published("yarn", config=lambda c: c["rope_parameters"].update(rope_type="yarn"))
    heads = published("heads", config=lambda c: c.update(num_key_value_heads=3))
    gap = published("gap", tensors=lambda t: t.pop("model.layers.0.mlp.up_proj.weight"))
    short = published("short", tensors=lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    extra = published("extra", tensors=lambda t: t.update({"lm_head.bias": np.zeros(128, "f4")}))
    shaped = published(
        "shaped", tensors=lambda t: t.update({"model.norm.weight": np.ones(31, "f4")})
    )
    truncated = published("truncated")
    whole = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(whole[: len(whole) // 2])
    no_config = published("no_config")
    (no_config / "config.json").unlink()
    shard = published("shard", "gpt2_sharded")
    (shard / "model-00002-of-00003.safetensors").unlink()
    escape = published("escape", "gpt2_sharded")
    index = json.loads((escape / "model.safetensors.index.json").read_text())
    index["weight_map"]["transformer.wte.weight"] = "../../model.safetensors"
    (escape / "model.safetensors.index.json").write_text(json.dumps(index))
    llama = ["model=llama", "model.d_model=32", "model.num_heads=4", "model.num_kv_heads=2"]
    llama += ["model.num_layers=2", "model.mlp_dim=80", "data=sequence", "data.vocab_size=128"]
    table += [
        ("eval", ["mode=inspect", f"source={bert}"], "unknown model_type 'bert'"),
        ("eval", ["mode=inspect", f"source={yarn}"], "rope_type='yarn' is not supported"),
        ("eval", ["mode=inspect", f"source={gap}"], "missing tensor model.layers.0.mlp.up_proj"),
        ("eval", ["mode=inspect", f"source={truncated}"], "unreadable weights"),
        ("eval", ["mode=inspect", f"source={no_config}"], "config.json: no such file"),
        ("eval", ["mode=inspect", f"source={shard}"], "model-00002-of-00003.safetensors: no such"),
        ("eval", ["mode=inspect", f"source={escape}"], "is not a file name in the directory"),
        ("eval", ["mode=diff", f"a={lm / 'llama_gqa'}", f"b={heads}"], "num_kv_heads=3"),
        ("train", [*llama, f"init.from={short}", f"hydra.run.dir={d}/hf1"], "missing: blocks/mlp"),
        ("train", [*llama, f"init.from={extra}", f"hydra.run.dir={d}/hf2"], "lm_head.bias"),
        ("train", [*llama, f"init.from={shaped}", f"hydra.run.dir={d}/hf3"], "norm/scale (source"),
    ]

    # issue 24: data=text (files, tokenizer, length against a saved model's positions)
    texts = d / "texts"
    (texts / "none").mkdir(parents=True)
    (texts / "empty.txt").write_text("")
    (texts / "latin1.txt").write_bytes(b"na\xefve caf\xe9\n" * 100)
    (texts / "short.txt").write_text("too short\n")
    (texts / "ok.txt").write_text("a line of text to score\n" * 100)
    from flax import nnx

    from zoo import create_model, save_pretrained

    small = create_model("transformer", vocab_size=256, d_model=8, num_heads=2, num_layers=1,
                         max_len=16, causal=True, rngs=nnx.Rngs(0))  # fmt: skip
    save_pretrained(small, texts / "small_lm")
    text_cases = [
        (f"data.path={texts / 'empty.txt'}", "empty.txt: the file is empty"),
        (f"data.path={texts / 'none'}", "none: the directory holds no text files"),
        (f"data.path={texts / 'latin1.txt'}", "latin1.txt: not UTF-8 text (byte 2 is ef)"),
        (f"data.path={texts}/*.md", "the pattern matches no files"),
        (f"data.path={texts / 'short.txt'}", "10 tokens are too few for data.length=128"),
        (f"data.tokenizer={texts / 'none'}", "the directory holds no tokenizer.json"),
        (f"data.tokenizer={texts / 'nowhere'}", "no such file or directory"),
        (f"data.tokenizer={texts / 'ok.txt'}", "not a readable tokenizer.json"),
        (f"data.cache_dir={texts / 'ok.txt'}/below", "cannot create it"),
    ]
    cache = f"data.cache_dir={texts}/cache"  # not the user's ~/.cache
    table += [
        (
            "train",
            [
                "model=transformer",
                "data=text",
                *(a if "cache_dir" in a else f"{a} {cache}").split(),
                f"hydra.run.dir={d}/text{i}",
            ],  # fmt: skip
            m,
        )
        for i, (a, m) in enumerate(text_cases)
    ]
    table.append(
        (
            "eval",
            [
                f"run_dir={texts / 'small_lm'}",
                "data=text",
                f"data.path={texts / 'ok.txt'}",
                f"data.cache_dir={texts}/cache",
                "data.length=32",
            ],  # fmt: skip
            "data.length=32 is beyond the model's 16 positions",
        )
    )
    lora = "model=transformer data=sequence model.lora.rank=2"
    table += [
        ("train", [*f"{lora} {a}".split(), f"hydra.run.dir={d}/lora{i}"], m)
        for i, (a, m) in enumerate(
            [
                ("model.lora.targets=[blocks/attn/qury]", "pattern 'blocks/attn/qury' matches"),
                ("model=mlp data=teacher", "the default patterns (**/attn/*, **/self_attn/*"),
            ]
        )
    ]
    # issue 22: image folders, vision models and published vision checkpoints
    from PIL import Image

    def image_folder(name: str, layout: dict[str, int]) -> Path:
        root = d / name
        for label, count in layout.items():
            (root / label).mkdir(parents=True)
            for i in range(abs(count)):
                if count < 0:  # files that do not decode
                    (root / label / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
                else:
                    Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / label / f"{i}.png")
        return root

    good = image_folder("img_good", {"a": 3, "b": 3})
    timm_vit = Path(__file__).resolve().parents[1] / "fixtures" / "vision" / "timm_vit"
    unknown_arch = d / "timm_unknown"
    unknown_arch.mkdir()
    (unknown_arch / "config.json").write_text(json.dumps({"architecture": "convnext_tiny"}))
    (unknown_arch / "model.safetensors").write_bytes((timm_vit / "model.safetensors").read_bytes())
    images = "model=resnet data=images data.image_size=8"
    vision = [
        (f"{images} data.path={image_folder('img_empty', {'a': 2, 'b': 0})}", "holds no files"),
        (f"{images} data.path={image_folder('img_one', {'a': 2})}", "only one class folder"),
        (f"{images} data.path={image_folder('img_bad', {'a': -2, 'b': -1})}", "none of its 3"),
        (f"{images} data.path={d}/img_missing", "no such directory"),
        (f"{images} data.path={d}/afile", "not a directory"),
        (f"{images} data.path={good} data.mean=[0.5,0.5]", "need 1 or 3 values"),
        (f"{images} data.path={good} data.image_size=0", "data.image_size=0 is invalid"),
        (f"model=vit data=images data.path={good} data.image_size=10", "not a multiple"),
        ("model=resnet model.layers=[1,1] model.widths=[8]", "model.widths has 1"),
        ("model=vit model.pool=max", "model.pool='max' is invalid"),
        (f"model=resnet data=digits init.from={unknown_arch}", "architecture 'convnext_tiny'"),
    ]
    table += [
        ("train", [*a.split(), f"hydra.run.dir={d}/vision_run{i}"], m)
        for i, (a, m) in enumerate(vision)
    ]
    reads = "(the zoo reads model_type gpt2, llama, resnet, vit"
    table.append(("eval", ["mode=inspect", f"source={unknown_arch}"], reads))
    # issue 23: the mesh, sharding rules and remat (one device here: indivisible dimensions and
    # meshes of several devices are in tests/e2e/test_sharded_devices.py)
    sharding = [
        ("parallel.mesh.data=2", "parallel.mesh={data: 2, fsdp: 1, tensor: 1} does not fit"),
        ("parallel.mesh.fsdp=-1", "parallel.mesh: only one axis may be -1"),
        ("parallel.mesh.data=0", "parallel.mesh.data=0 is invalid"),
        ("parallel.mesh={data:1,tensor:x}", "parallel.mesh"),
        ("parallel.rules=[[head,[null,nope]]]", "unknown mesh axis 'nope'"),
        ("parallel.rules=[[nothing,[null]]]", "parallel.rules pattern 'nothing' matches no path"),
        ("parallel.rules=[['**/kernel',[fsdp]]]", "the spec ['fsdp'] has length 1"),
        ("parallel.rules=[[head]]", "parallel.rules=[['head']] is invalid"),
        ("parallel=tp", "model 'deep_nested' declares no tensor-parallel rules"),
        ("parallel=nope", "parallel"),
        ("model=transformer model.remat=some", "model.remat='some' is invalid"),
    ]
    table += [
        (t, [*a.split(), f"hydra.run.dir={d}/shard{i}"], m) for i, (a, m) in enumerate(sharding)
    ]
    table += predict_and_export_cases(d)
    return table


# issue 25: zoo-predict's sources, inputs, rows and outputs, and zoo-export's settings
def predict_and_export_cases(d: Path) -> list[tuple[str, list[str], str]]:
    from flax import nnx
    from omegaconf import OmegaConf

    import zoo

    model = zoo.create_model("mlp", rngs=nnx.Rngs(0), in_features=3, widths=[4], out_features=2)
    zoo.save_pretrained(model, d / "pretrained")
    run = d / "csv_run"  # a run trained on a csv: its feature columns a, b by name
    train_csv = d / "train_rows.csv"
    train_csv.write_text("a,b,label\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(20)))
    cfg = zoo.compose(["model=mlp", "data=csv", f"data.path={train_csv}", "data.target=label"])
    run.mkdir()
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    two = zoo.create_model("mlp", rngs=nnx.Rngs(0), in_features=2, widths=[4], out_features=2)
    zoo.save_pretrained(two, run / "model")
    (d / "unfinished").mkdir()
    (d / "unfinished" / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    files = {
        "p_words.csv": "a,b,c\n1,2,3\n4,x,6\n",
        "p_ragged.csv": "a,b,c\n1,2,3\n4,5\n",
        "p_big.csv": "a,b,c\n1,2,1e999\n",
        "p_narrow.csv": "a,b\n1,2\n",
        "p_header.csv": "a,b,c\n",
        "p_twice.csv": "a,a,c\n1,2,3\n",
        "p_run_lacks.csv": "a,z,label\n1,2,1\n",
        "p_run_extra.csv": "a,b,extra\n1,2,3\n",
        "p_run_label.csv": "a,b,label\n1,2,5\n",
        "p_exists.csv": "kept",
    }
    for name, text in files.items():
        (d / name).write_text(text)
    x = np.zeros((4, 3))
    write_npz(d / "p_1d.npz", x=x[:, 0])
    write_npz(d / "p_rows.npz", x=x, y=np.zeros(3))
    write_npz(d / "p_obj.npz", x=np.array([[1, "a", 2]], dtype=object))
    write_npz(d / "p_fortran.npz", x=np.asfortranarray(np.ones((4, 3))))
    write_npz(d / "p_nan.npz", x=np.where(np.eye(4, 3) > 0, np.nan, 0.0))
    (d / "p_cut.npz").write_bytes(write_npz(d / "p_whole.npz", x=x).read_bytes()[:-30])
    pre, out = f"source={d}/pretrained", f"output={d}/p_out.csv"
    predict = [
        (f"input={d}/p_words.csv {out}", "source is required"),
        (f"source={d}/nope input={d}/p_words.csv {out}", "no such directory"),
        (f"source={d}/adir input={d}/p_words.csv {out}", "not a model directory"),
        (f"source={d}/unfinished input={d}/p_words.csv {out}", "holds no saved model/"),
        (f"{pre} input={d}/p_words.csv output={d}/p_exists.csv", "set overwrite=true"),
        (f"{pre} input={d}/p_words.csv output={d}/p_words.csv", "is the input file"),
        (f"{pre} input={d}/p_words.csv output={d}/adir", "is a directory"),
        (f"{pre} input={d}/text.npz {out}", "not an .npz file"),
        (f"{pre} input={d}/afile {out}", "reads .csv, .npz files"),
        (f"{pre} input={d}/p_words.csv {out}", "line 3, column 'b': 'x' is not a number"),
        (f"{pre} input={d}/p_ragged.csv {out}", "line 3 has 2 fields, the header 3"),
        (f"{pre} input={d}/p_big.csv {out}", "'1e999' is not finite"),
        (f"{pre} input={d}/p_narrow.csv {out}", "2 feature columns, but the model takes 3"),
        (f"{pre} input={d}/empty.csv {out}", "the file is empty"),
        (f"{pre} input={d}/p_header.csv {out}", "no rows to predict"),
        (f"{pre} input={d}/p_twice.csv {out}", "column 'a' appears twice"),
        (f"{pre} input={d}/p_words.csv {out} task=classification top_k=5", "model's 2 classes"),
        (f"{pre} input={d}/p_1d.npz {out}", "x has shape (4,); it must be 2-D"),
        (f"{pre} input={d}/p_rows.npz {out}", "x has 4 rows but y has 3"),
        (f"{pre} input={d}/p_obj.npz {out}", "x holds object values"),
        (f"{pre} input={d}/p_fortran.npz {out}", "Fortran order"),
        (f"{pre} input={d}/p_nan.npz {out}", "row 0: feature 0 is nan"),
        (f"{pre} input={d}/p_cut.npz {out}", "p_cut.npz"),
        (f"source={run} input={d}/p_run_lacks.csv {out}", "lacks the model's feature columns 'b'"),
        (f"source={run} input={d}/p_run_extra.csv {out}", "'extra' are not among the model's"),
        (f"source={run} input={d}/p_run_label.csv {out}", "line 2: label 5 is not a class"),
    ]
    exports = [
        (f"{pre}", "out is required"),
        (f"source={d}/nope out={d}/e1", "no such directory"),
        (f"{pre} out={d}/afile", "is not an export directory"),
        (f"{pre} out={d}/e1 format=tflite", "format='tflite' is invalid"),
        (f"{pre} out={d}/e1 platforms=[gpu]", "'gpu' is unknown"),
        (f"{pre} out={d}/e1 platforms=[cpu,cpu]", "names a platform twice"),
    ]
    cases = [("predict", a.split(), m) for a, m in predict]
    return cases + [("export", a.split(), m) for a, m in exports]


def test_at_least_sixty_bad_inputs_each_get_one_line_and_a_nonzero_exit(cases, tmp_path):
    assert len(cases) >= 60
    (tmp_path / "cases.json").write_text(json.dumps([[app, args] for app, args, _ in cases]))
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, str(tmp_path / "cases.json")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    problems = []
    for (app, args, fragment), (code, stderr, seconds, _) in zip(cases, outcomes, strict=True):
        lines = [line for line in stderr.splitlines() if line.strip()]
        case = f"{app} {' '.join(args)}"
        if code in (0, "escaped") or len(lines) != 1 or "Traceback" in stderr:
            problems.append(f"{case}: exit {code}, stderr {stderr[-400:]!r}")
        elif not lines[0].startswith("error: ") or fragment not in lines[0]:
            problems.append(f"{case}: {lines[0]!r} lacks {fragment!r}")
        elif seconds > 60:
            problems.append(f"{case}: took {seconds:.0f} s")
    assert not problems, "\n".join(problems)
    assert max(rss for *_, rss in outcomes) < 4 * 2**30  # a few GiB at most, all cases together
    assert not (tmp_path / "outputs").exists()  # refused runs leave no run directory behind
    # issue 25: a refused prediction or export writes nothing, and leaves an existing file be
    (d,) = {Path(a[7:]).parent for _, args, _ in cases for a in args if a.endswith("/p_out.csv")}
    assert not [p.name for p in d.iterdir() if p.name.startswith(("p_out", ".p_", "e1"))]
    assert (d / "p_exists.csv").read_text() == "kept"
