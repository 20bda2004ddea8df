"""`zoo-generate` (`python generate.py` in a checkout): text from a zoo decoder (a published
Hugging Face checkpoint directory, a zoo pretrained directory or a train run directory), the
prompts tokenized by the checkpoint's own `tokenizer.json` (the `tokenizers` library).

    zoo-generate source=<dir> prompt="once upon a time" max_new_tokens=20
    zoo-generate source=<dir> prompts_file=prompts.txt out=completions.jsonl temperature=0.8 seed=1

Settings are `key=value` words, checked like every zoo setting (one line naming a bad one).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from zoo.config.checks import check_values
from zoo.config.fields import defaults, setting, settings_of
from zoo.errors import ZooError
from zoo.untrusted import parse_json, read_bounded

MAX_PROMPTS_BYTES = 64 << 20
MAX_TOKENIZER_BYTES = 256 << 20
TOKENIZER = "tokenizer.json"
TEXT_KEYS = ("source", "prompt", "prompts_file", "out", "tokenizer")  # taken as written


@dataclass(frozen=True)
class GenerateSettings:
    """zoo-generate: continue prompts with a zoo decoder."""

    source: str | None = setting(
        None, "a Hugging Face checkpoint dir, a zoo pretrained dir or a train run dir"
    )
    prompt: str | None = setting(None, "one prompt (text)")
    prompts_file: str | None = setting(None, "a text file of prompts, one per line")
    out: str | None = setting(None, "write the completions here as JSON lines; null: print")
    tokenizer: str | None = setting(None, "a tokenizer.json (or its dir); null: the source's")
    max_new_tokens: int = setting(32, "tokens added to each prompt", ge=1, le=1 << 20)
    temperature: float = setting(0.0, "0: greedy; above: sample from softmax(logits / t)", ge=0)
    top_k: int | None = setting(None, "sample among the top_k most likely tokens", ge=1)
    top_p: float | None = setting(None, "sample within the top_p probability nucleus", gt=0, le=1)
    seed: int = setting(0, "the sampling seed", ge=0)
    eos_id: int | None = setting(None, "stop a row after this token; null: the config's")
    batch_size: int = setting(8, "prompts generated together", ge=1, le=4096)


def parse_arguments(argv: list[str]) -> dict[str, Any]:
    """The settings of `key=value` words, defaults filled in and checked."""
    settings = settings_of(GenerateSettings)
    names = [s.name for s in settings]
    values: dict[str, Any] = {}
    for word in argv:
        key, sep, text = word.partition("=")
        if not sep:
            raise ZooError(f"{word!r}: settings are key=value (keys: {', '.join(names)})")
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ZooError(f"unknown setting {key!r}{hint} (settings: {', '.join(names)})")
        if key in TEXT_KEYS:
            values[key] = None if text == "null" else text
            continue
        try:
            values[key] = yaml.safe_load(text) if text else None
        except yaml.YAMLError:
            values[key] = text
    values = defaults(settings) | values
    check_values(settings, values, "")
    return values


def _tokenizer(path: Path):
    """The `tokenizers` Tokenizer of a tokenizer.json (or of a directory holding one)."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise ZooError(
            "zoo-generate needs the tokenizers library for text: pip install 'zoo[text]'"
        ) from None
    file = path / TOKENIZER if path.is_dir() else path
    data = read_bounded(file, MAX_TOKENIZER_BYTES, "tokenizer", f"no such file (no {TOKENIZER})")
    try:
        return Tokenizer.from_str(data.decode("utf-8"))
    except Exception as err:  # tokenizers raises its own Exception type for a bad file
        raise ZooError(f"{file}: unreadable tokenizer ({str(err)[:160]})") from None


def _model_dir(source: Path) -> Path:
    """The directory holding the weights: a run's `model/`, else the source itself."""
    if not source.is_dir():
        problem = "not a directory" if source.exists() else "no such directory"
        raise ZooError(f"source={source}: {problem}")
    return source / "model" if (source / "model" / "config.json").exists() else source


def _eos(directory: Path) -> int | None:
    """The eos_token_id a published config.json names (an int), else None."""
    try:
        config = parse_json(
            read_bounded(directory / "config.json", 1 << 20, "config"),
            directory / "config.json",
            "config",
            4096,
            16,
        )
    except ZooError:
        return None
    eos = config.get("eos_token_id") if isinstance(config, dict) else None
    return eos if isinstance(eos, int) and not isinstance(eos, bool) else None


def _prompts(values: dict[str, Any]) -> list[str]:
    if (values["prompt"] is None) == (values["prompts_file"] is None):
        raise ZooError("give prompt=<text> or prompts_file=<file of prompts, one per line>")
    if values["prompt"] is not None:
        return [values["prompt"]]
    path = Path(values["prompts_file"])
    data = read_bounded(path, MAX_PROMPTS_BYTES, "prompts file")
    try:
        lines = [line for line in data.decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise ZooError(f"prompts_file={path}: not UTF-8 text") from None
    if not lines:
        raise ZooError(f"prompts_file={path}: holds no prompt")
    return lines


def run(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Generate as the settings say; print or write the completions; return them."""
    from tqdm import tqdm

    from zoo.models.generation import generate
    from zoo.weights.pretrained import from_pretrained

    if values["source"] is None:
        raise ZooError("give source=<checkpoint, pretrained or train run directory>")
    prompts = _prompts(values)
    directory = _model_dir(Path(values["source"]))
    beside = [d for d in (directory, Path(values["source"])) if (d / TOKENIZER).exists()]
    tokenizer_path = Path(values["tokenizer"] or (beside or [directory])[0])  # a text run's own
    tokenizer = _tokenizer(tokenizer_path)
    model = from_pretrained(directory)
    eos_id = values["eos_id"] if values["eos_id"] is not None else _eos(directory)
    out = Path(values["out"]) if values["out"] else None
    if out is not None and out.is_dir():
        raise ZooError(f"out={out}: is a directory; give a .jsonl file")
    records = []
    size = values["batch_size"]
    batches = range(0, len(prompts), size)
    for start in tqdm(batches, desc="generate", unit="batch", disable=len(batches) < 2):
        chunk = prompts[start : start + size]
        ids = [tokenizer.encode(p, add_special_tokens=False).ids for p in chunk]
        for i, row in enumerate(ids):
            if not row:
                raise ZooError(f"prompt {start + i + 1} ({chunk[i][:40]!r}) encodes to no tokens")
        new = generate(
            model,
            ids,
            max_new_tokens=values["max_new_tokens"],
            temperature=values["temperature"],
            top_k=values["top_k"],
            top_p=values["top_p"],
            eos_id=eos_id,
            seed=values["seed"] + start,
        )
        for prompt, row, tokens in zip(chunk, ids, new, strict=True):
            # decoded after the prompt, so that a word's leading space survives the decoder
            head = tokenizer.decode(row, skip_special_tokens=False)
            whole = tokenizer.decode(row + tokens, skip_special_tokens=False)
            if whole.startswith(head):
                text = whole[len(head) :]
            else:
                text = tokenizer.decode(tokens, skip_special_tokens=False)
            records.append({"prompt": prompt, "completion": text, "prompt_ids": row, "ids": tokens})
    if out is None:
        for record in records:
            print(f"{record['prompt']}{record['completion']}")
    else:
        from zoo.files import write_atomically

        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(out, "".join(json.dumps(r) + "\n" for r in records))
        print(f"{len(records)} completions written to {out}")
    return records


def main(argv: list[str] | None = None) -> None:
    """`zoo-generate key=value ...`; `--help` lists the settings."""
    from zoo.app.cli import _full_errors
    from zoo.app.process import use_compilation_cache

    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip() + "\n\nSettings:")
        for field in dataclasses.fields(GenerateSettings):
            rule = field.metadata["zoo"]
            print(f"  {field.name}={json.dumps(field.default)}  {rule.help}")
        return
    try:
        use_compilation_cache()
        run(parse_arguments(argv))
    except ZooError as err:
        if _full_errors():
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
