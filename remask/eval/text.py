"""Text in and out of a model for lm-eval: the model's tokenizer, or token ids as text.

A model without a tokenizer (exact oracles, the golden tiny checkpoints) reads and writes
text as token ids separated by whitespace: ``"3 1 0"`` is the ids [3, 1, 0], and generated
ids come back the same way. A task for such a model writes its prompts and answers as ids.
"""

from __future__ import annotations

__all__ = ["IdTokenizer", "cut_at_stop", "TextCodec"]


class IdTokenizer:
    """Whitespace-separated token ids as text (for models without a tokenizer).

    Parameters
    ----------
    vocab_size : int
        Ids must lie in [0, vocab_size).
    """

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def encode(self, text: str) -> list[int]:
        ids = []
        for item in text.split():
            try:
                value = int(item)
            except ValueError:
                raise ValueError(
                    f"this model has no tokenizer, so text must be whitespace-separated token ids; "
                    f"got {item!r} in {text[:60]!r}"
                ) from None
            if not 0 <= value < self.vocab_size:
                raise ValueError(
                    f"token id {value} in {text[:60]!r} is outside the vocabulary [0, {self.vocab_size})"
                )
            ids.append(value)
        return ids

    def decode(self, ids: list[int]) -> str:
        return " ".join(str(int(i)) for i in ids)


def cut_at_stop(text: str, stops) -> str:
    """``text`` up to the first occurrence of any stop string (lm-eval's ``until``).

    Parameters
    ----------
    text : str
    stops : str, list of str or None

    Returns
    -------
    str: cut before the earliest stop string found (the whole text when none is).
    """
    if stops is None:
        return text
    if isinstance(stops, str):
        stops = [stops]
    cut = len(text)
    for stop in stops:
        if not isinstance(stop, str):
            raise TypeError(f"stop sequences must be strings, got {stop!r}")
        if stop:
            at = text.find(stop)
            if at != -1:
                cut = min(cut, at)
    return text[:cut]


class TextCodec:
    """Encodes prompts and decodes generations for one model.

    With a Hugging Face tokenizer: a prompt is encoded without special tokens and the
    tokenizer's BOS is put first when it has one and the text does not already start with it
    (a rendered chat template holds it already), as LLaDA's and Dream's evaluation do;
    generated ids are decoded up to the first EOS/EOT id, special tokens skipped. Without a
    tokenizer: :class:`IdTokenizer`.
    """

    def __init__(self, model):
        self.model = model
        self.tokenizer = getattr(model, "tokenizer", None)
        self.plain = self.tokenizer is None or not callable(getattr(self.tokenizer, "encode", None))
        if self.plain:
            self.tokenizer = IdTokenizer(model.vocab_size)
        ends = {getattr(model, name, None) for name in ("eos_id", "eot_id")}
        self.end_ids = {int(i) for i in ends if isinstance(i, int) and not isinstance(i, bool)}

    @property
    def name(self) -> str:
        if self.plain:
            return "token-ids"
        return str(getattr(self.tokenizer, "name_or_path", type(self.tokenizer).__name__))

    def encode(self, text: str, *, special: bool = True) -> list[int]:
        if self.plain:
            return self.tokenizer.encode(text)
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        bos_id = getattr(self.tokenizer, "bos_token_id", None)
        bos = getattr(self.tokenizer, "bos_token", None)
        if special and bos_id is not None and not (bos and text.startswith(bos)):
            ids = [int(bos_id)] + ids
        return ids

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context ids, continuation ids): the whole text encoded, split at the context's length.

        Trailing spaces of the context move to the continuation (lm-eval's convention), so a
        word keeps its leading space.
        """
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        if self.plain:
            return self.tokenizer.encode(context), self.tokenizer.encode(continuation)
        whole = self.encode(context + continuation)
        head = self.encode(context) if context else self.encode("")
        return whole[: len(head)], whole[len(head) :]

    def decode(self, ids: list[int]) -> str:
        """Generated ids to text: cut at the first EOS/EOT id, special tokens skipped."""
        for k, i in enumerate(ids):
            if i in self.end_ids:
                ids = ids[:k]
                break
        if self.plain:
            return self.tokenizer.decode(ids)
        return self.tokenizer.decode(ids, skip_special_tokens=True)
