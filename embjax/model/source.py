"""What a pretrained source is once read: `Source` (its table, token strings and detected format), the format
names a message uses, and the one-line error for a file that does not parse."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

KINDS = ("npy", "word2vec_text", "word2vec_binary", "glove", "fasttext_vec", "safetensors", "hf_model", "run_dir")
KIND_NAMES = {
    "npy": ".npy array",
    "word2vec_text": "word2vec text",
    "word2vec_binary": "word2vec binary",
    "glove": "GloVe text",
    "fasttext_vec": "fastText .vec",
    "safetensors": "safetensors file",
    "hf_model": "Hugging Face model folder",
    "run_dir": "embjax run directory",
}


FORMATS = (
    "a .npy, .safetensors, word2vec text or binary, GloVe or fastText .vec file, a Hugging Face model folder "
    "or an embjax run directory"
)


# the input-embedding tensor, by name suffix, in this order: GPT-2; LLaMA/Mistral/OPT/BART; BERT family; T5;
# Meta's LLaMA checkpoints; generic; GPT-NeoX/Pythia; bare names
EMBEDDING_NAMES = (
    "wte.weight",
    "embed_tokens.weight",
    "word_embeddings.weight",
    "shared.weight",
    "tok_embeddings.weight",
    "embeddings.weight",
    "embed_in.weight",
    "wte",
    "embedding",
)
CHUNK = 1 << 20  # bytes read at a time from binary files


FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


@dataclass
class Source:
    """A pretrained table E (float32, N×d') and, when the format has them, a token string per row."""

    tokens: list[str] | None  # a string per row; None: rows are matched by id ("" for an id with no token)
    E: np.ndarray  # float32 (N, d')
    kind: str  # one of KINDS
    tensor: str | None = None  # safetensors / HF: the tensor read
    tokenizer_file: str | None = None  # HF model folder: its tokenizer.json, when it has one
    path: str | None = None  # what was read

    def describe(self) -> str:
        """One line: what was detected and read."""
        N, d = self.E.shape
        extra = [f"tensor {self.tensor}"] if self.tensor else []
        extra += [f"tokens from {os.path.basename(self.tokenizer_file)}"] if self.tokenizer_file else []
        extra += ["a token per row" if self.tokens is not None else "no tokens: matched by id"]
        return f"{KIND_NAMES[self.kind]} {self.path!r}: {N} × {d} float32 ({', '.join(extra)})"


def parse_error(path: str, expected: str, found: str) -> ValueError:
    """The one-line error for a file that is not what it should be."""
    found = " ".join(found.split("\n"))
    return ValueError(f"pretrained source {path!r}: expected {expected}; found {found}")


def snippet(b: bytes | str, n: int = 40) -> str:
    return repr(b[:n]) + ("…" if len(b) > n else "")
