"""The tokenizers a text corpus is prepared with: a tokenizer file (Hugging Face format), a byte-level BPE learned
from the corpus, or the word-level vocabulary (WORD_RULE) learned from its training documents; and the batch
encoder that turns documents into token ids."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ..config import ConfigError, DataConfig, tokenizer_file_size
from .sources import SEPARATOR, Source, held_out

UNK, EOS = "<unk>", "<eos>"  # the word-level vocabulary's two special tokens (ids 0 and 1)
BPE_TRAIN_CHARS = 100 << 20  # a local BPE tokenizer learns its merges from the corpus's first 100 MB


WORD_RULE = (
    "lowercased (Unicode); a word is a maximal run of word characters (\\w+: letters, digits, underscore); "
    "everything else only separates words; the V - 2 most frequent words of the training documents (ties by "
    "the word) plus <unk> (id 0: every other word) and <eos> (id 1: after each document)"
)


def load_tokenizer_file(path: str):
    """A Hugging Face tokenizer.json (the config has checked that it parses), with any truncation or padding it
    was saved with turned off: a document is tokenised whole, and no pad id enters the stream."""
    from tokenizers import Tokenizer

    tokenizer_file_size(path)
    tok = Tokenizer.from_file(path)
    tok.no_truncation()
    tok.no_padding()
    return tok


def train_bpe(source: Source, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 257:
        raise ConfigError(
            f"data.vocab_size: got {vocab_size} with data.tokenizer='bpe'; allowed: at least 257 "
            "(or data.tokenizer=byte with 256)"
        )

    def prefix() -> Iterator[str]:
        seen = 0
        for doc in source.documents():
            yield doc + SEPARATOR
            seen += len(doc)
            if seen >= BPE_TRAIN_CHARS:
                return

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        prefix(),
        trainers.BpeTrainer(
            vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
        ),
    )
    return tok


def word_tokenizer():
    """The word-level tokenizer before its vocabulary is learned (the rule in WORD_RULE): a `tokenizers`
    WordLevel model, so it saves as tokenizer.json and encodes in Rust like the others."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\w+"), behavior="removed", invert=True)
    return tok


def train_words(source: Source, d: DataConfig):
    """The word vocabulary of the training documents only (the split's rule; all documents when the rule holds
    none out for training, where the tail of the stream is held out instead)."""
    from tokenizers import trainers

    if d.vocab_size < 3:
        raise ConfigError(f"data.vocab_size: got {d.vocab_size} with data.tokenizer='word'; allowed: at least 3")
    seen = {"train": 0}

    def training(all_docs: bool) -> Iterator[list[str]]:
        for texts, start in _numbered(source.documents()):
            ids = np.arange(start, start + len(texts))
            keep = np.ones(len(texts), bool) if all_docs else ~held_out(ids, d.eval_fraction)
            seen["train"] += int(keep.sum())
            yield [t for t, k in zip(texts, keep) if k]

    def learn(all_docs: bool):
        tok = word_tokenizer()
        trainer = trainers.WordLevelTrainer(
            vocab_size=d.vocab_size, min_frequency=0, special_tokens=[UNK, EOS], show_progress=False
        )
        tok.train_from_iterator(training(all_docs), trainer)
        return tok

    tok = learn(False)
    if not seen["train"]:
        tok = learn(True)
    if tok.get_vocab_size() < d.vocab_size:
        raise ConfigError(
            f"data.vocab_size: got {d.vocab_size} with data.tokenizer='word', but the training documents hold "
            f"{tok.get_vocab_size() - 2:,} distinct words; allowed: at most {tok.get_vocab_size():,}"
        )
    return tok


def _numbered(docs: Iterator[str], n: int = 4096) -> Iterator[tuple[list[str], int]]:
    """Documents in lists of n, with the index of each list's first document."""
    buf, start = [], 0
    for doc in docs:
        buf.append(doc)
        if len(buf) == n:
            yield buf, start
            buf, start = [], start + n
    if buf:
        yield buf, start


def encoder(tok, eos: int | None = None) -> Callable[[list[str]], list[np.ndarray]]:
    """Texts -> their token ids; `tok` is None for bytes, else a `tokenizers.Tokenizer` (batched, in Rust);
    `eos`: an id appended to each text (the word-level vocabulary's <eos>)."""
    if tok is None:
        return lambda texts: [np.frombuffer(t.encode("utf-8"), np.uint8) for t in texts]
    fast = getattr(tok, "encode_batch_fast", tok.encode_batch)
    tail = [] if eos is None else [eos]
    return lambda texts: [np.asarray(e.ids + tail, np.int64) for e in fast(texts, add_special_tokens=False)]
