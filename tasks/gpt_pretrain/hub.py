"""``--data hf:OWNER/NAME[:PATTERN]``: a Hugging Face dataset's parquet shards as the training corpus.

The shards come through ``huggingface_hub.snapshot_download`` into the user's own Hugging Face cache (so
``HF_HUB_CACHE``, ``HF_ENDPOINT``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE`` work as everywhere else), once, before the
first trial; trials never touch the network. ``PATTERN`` picks the shards (default ``*.parquet``): a corpus such
as autoresearch's ClimbMix has thousands, so name a few, e.g. ``hf:karpathy/climbmix-400b-shuffle:shard_0000[0-7].parquet``.
"""
from __future__ import annotations

import re
from pathlib import Path

from recur.core.task import TaskError

PREFIX = "hf:"
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_spec(data: object) -> bool:
    return isinstance(data, str) and data.startswith(PREFIX)


def parse(spec: str) -> tuple[str, str]:
    """``hf:OWNER/NAME[:PATTERN]`` -> (repo id, file pattern); TaskError when it is not that shape."""
    repo, _, pattern = spec[len(PREFIX):].partition(":")
    if not _REPO.match(repo):
        raise TaskError(f"--data {spec}: expected hf:OWNER/NAME or hf:OWNER/NAME:PATTERN (a dataset on the Hugging "
                        "Face hub, e.g. hf:karpathy/climbmix-400b-shuffle:shard_00000.parquet)")
    return repo, pattern or "*.parquet"


def fetch(spec: str) -> Path:
    """The local folder holding the dataset's matching parquet shards, downloaded once into the HF cache."""
    repo, pattern = parse(spec)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        folder = Path(snapshot_download(repo, repo_type="dataset", allow_patterns=[pattern]))
    except RepositoryNotFoundError:
        raise TaskError(f"--data {spec}: no dataset {repo} on the Hugging Face hub (or it needs a token: set HF_TOKEN)") from None
    except LocalEntryNotFoundError as exc:  # unreachable hub (or offline mode) and nothing cached
        raise TaskError(f"--data {spec}: cannot reach the Hugging Face hub and {repo} is not in the local cache "
                        f"({_first_line(exc)}); connect, or pass --data DIR with your own .txt/.md/.parquet files") from None
    except (HfHubHTTPError, OSError) as exc:
        raise TaskError(f"--data {spec}: download failed ({_first_line(exc)})") from None
    if not any(folder.rglob("*.parquet")):
        raise TaskError(f"--data {spec}: {repo} has no parquet files matching {pattern!r}")
    return folder


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
