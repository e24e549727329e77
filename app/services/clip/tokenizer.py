"""CLIP's byte-pair tokenizer without torch: the token ids of open_clip's SimpleTokenizer.

An ONNX runtime serving from a cached export must not import torch (it is ~500 MB of RSS),
and open_clip's tokenizer module imports it. This is the same algorithm (OpenAI's CLIP
BPE: ftfy + html clean-up, the same regex, the same merges file shipped with open_clip),
returning numpy int64 rows; tests check it against open_clip on a varied corpus.

Two differences, neither visible in the ids: the per-word BPE cache is an LRU of bounded
size holding short words only (open_clip's grows with every new word it sees), and
encoding stops once a text has more tokens than fit in the context, since the rest would
be truncated anyway. A word's merges cost time quadratic in its length, so callers bound
the text (MAX_TEXT_LENGTH) before tokenising.
"""

import functools
import gzip
import html
import importlib.util
import itertools
import string
from pathlib import Path
from typing import Any

import ftfy
import numpy as np
import regex

# Words whose merges are remembered; tags and captions repeat a small vocabulary. Only
# words up to CACHED_WORD_LENGTH characters are kept, so the cache stays a few MB
# whatever is sent (a 1,000-character word's merges take about 73 KB).
BPE_CACHE_WORDS = 20_000
CACHED_WORD_LENGTH = 48
CLEAN_MODES = ("lower", "whitespace", "canonicalize")
SPECIAL_TOKENS = ("<start_of_text>", "<end_of_text>")
_MERGES = 49152 - 256 - 2  # merges used by CLIP's vocabulary (as open_clip reads them)


def vocabulary_file() -> Path:
    """open_clip's merges file, found without importing open_clip (which imports torch)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("open_clip is not installed: its BPE vocabulary is needed")
    return Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"


@functools.cache
def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible map from UTF-8 bytes to printable characters."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes), strict=True))


@functools.cache
def _vocabulary(path: Path) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """(token -> id, merge pair -> rank), shared by every tokenizer in the process."""
    with gzip.open(path) as fh:
        lines = fh.read().decode("utf-8").split("\n")[1 : _MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    base = list(_bytes_to_unicode().values())
    vocab = [*base, *(b + "</w>" for b in base), *("".join(m) for m in merges), *SPECIAL_TOKENS]
    ranks = {(m[0], m[1]): i for i, m in enumerate(merges)}
    return {token: i for i, token in enumerate(vocab)}, ranks


def _basic_clean(text: str) -> str:
    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def _clean(text: str, mode: str) -> str:
    text = _basic_clean(text)
    if mode == "canonicalize":
        text = text.replace("_", " ").translate(str.maketrans("", "", string.punctuation))
        return " ".join(text.lower().split()).strip()
    text = " ".join(text.split()).strip()
    return text.lower() if mode == "lower" else text


class ClipTokenizer:
    """Texts to (n, context_length) int64 token ids, as open_clip's SimpleTokenizer."""

    def __init__(
        self, context_length: int, clean: str = "lower", vocabulary: Path | None = None
    ) -> None:
        """`vocabulary`: the merges file (default: open_clip's; a torch-free start reads the
        copy kept beside the probe reference)."""
        if clean not in CLEAN_MODES:
            raise ValueError(f"unknown clean mode {clean!r}")
        self.context_length = context_length
        self.clean = clean
        self.encoder, self.ranks = _vocabulary(vocabulary or vocabulary_file())
        self.sot = self.encoder[SPECIAL_TOKENS[0]]
        self.eot = self.encoder[SPECIAL_TOKENS[1]]
        self._bytes = _bytes_to_unicode()
        self._pattern = regex.compile(
            "|".join(SPECIAL_TOKENS)
            + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
        self._cached_merge = functools.lru_cache(maxsize=BPE_CACHE_WORDS)(self._merge)

    @classmethod
    def from_spec(cls, spec: dict[str, Any], vocabulary: Path | None = None) -> "ClipTokenizer":
        return cls(int(spec["context_length"]), str(spec.get("clean", "lower")), vocabulary)

    def spec(self) -> dict[str, Any]:
        return {"kind": "clip-bpe", "context_length": self.context_length, "clean": self.clean}

    def _bpe(self, word: str) -> tuple[str, ...]:
        if len(word) <= CACHED_WORD_LENGTH:
            return self._cached_merge(word)
        return self._merge(word)

    def _merge(self, word: str) -> tuple[str, ...]:
        """Byte-pair merges of one word (already mapped to CLIP's byte characters)."""
        if word in SPECIAL_TOKENS:
            return (word,)
        parts = (*word[:-1], word[-1] + "</w>")
        while len(parts) > 1:
            pairs = set(itertools.pairwise(parts))
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = tuple(merged)
        return parts

    def encode(self, text: str, limit: int | None = None) -> list[int]:
        """Token ids of one text (no start/end tokens); stops once past `limit` ids."""
        ids: list[int] = []
        for word in self._pattern.findall(_clean(text, self.clean)):
            mapped = "".join(self._bytes[b] for b in word.encode("utf-8"))
            ids.extend(self.encoder[token] for token in self._bpe(mapped))
            if limit is not None and len(ids) > limit:
                break
        return ids

    def count(self, text: str) -> int:
        """Tokens of `text` that the model reads: the text's own, without the start and end
        markers every text gets (so "a red circle" counts 3), and no more than the context
        leaves room for (`__call__` cuts longer texts there). Padding never counts."""
        room = self.context_length - 2
        return min(len(self.encode(text, limit=room)), room)

    def __call__(self, texts: list[str]) -> np.ndarray:
        width = self.context_length
        out = np.zeros((len(texts), width), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot, *self.encode(text, limit=width), self.eot]
            if len(ids) > width:
                ids = ids[:width]
                ids[-1] = self.eot
            out[row, : len(ids)] = ids
        return out
