"""A tiny random BERT checkpoint written to disk for tests (no download)."""

from __future__ import annotations

import torch

TINY_BERT_WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "mat",
    "a",
    "dog",
    "ran",
    "far",
    "away",
    "and",
    "then",
]


def write_tiny_bert(path, *, max_position_embeddings: int = 64):
    """A randomly initialised one-layer BERT with a word-level vocabulary, saved to ``path``
    (no download): ids 0-4 are [PAD] [UNK] [CLS] [SEP] [MASK], then TINY_BERT_WORDS."""
    import transformers

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_BERT_WORDS]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = transformers.BertTokenizer(str(path / "vocab.txt"))
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    transformers.BertForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
