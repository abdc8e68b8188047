"""A TinyTransformer trained on an exact oracle, as a Denoiser, and its checkpoint format.

``remask.analysis.train_toy`` fits the network; this module holds what a trained toy *is*
(:class:`ToyModel`) and how it is saved and loaded, so that ``load_model(DIR)`` opens a
checkpoint ``train_toy(..., out=DIR)`` wrote like any other model directory.

Vocabulary: an oracle's mask id is ``vocab_size`` with no logit column (MDLM style), while a
TinyTransformer's mask is its last logit column (LLaDA style). The network is therefore
built with ``oracle.vocab_size + 1`` columns, so both mask ids are the same integer, and
:class:`ToyModel` drops the mask column from the logits: the trained model then has exactly
the oracle's ``mask_id``/``vocab_size``.
"""

from __future__ import annotations

import json
import os

import torch
from torch import nn

from remask.models.tiny import TinyTransformer

__all__ = ["ToyModel", "is_toy_checkpoint", "load_toy", "save_toy"]

CONFIG_NAME = "toy_config.json"
WEIGHTS_NAME = "model.pt"


class ToyModel(nn.Module):
    """A TinyTransformer seen through an oracle's vocabulary, as a Denoiser.

    Parameters
    ----------
    net : TinyTransformer
        With ``vocab_size = V + 1`` columns, the last one its mask.
    config : dict, optional
        Training configuration, kept for the checkpoint and reports.

    Attributes
    ----------
    mask_id : int
        ``V``, the oracle's mask id (equal to ``net.mask_id``).
    vocab_size : int
        ``V`` logit columns (the network's mask column is dropped).
    seq_len_trained : int
        Sequence length of the training samples.
    history : dict
        ``{"step": [...], "loss": [...]}`` recorded by ``remask.analysis.train_toy``.
    """

    def __init__(self, net: TinyTransformer, *, config: dict | None = None):
        super().__init__()
        if not isinstance(net, TinyTransformer):
            raise TypeError(f"net must be a TinyTransformer, got {type(net).__name__}")
        self.net = net
        self.vocab_size = net.vocab_size - 1
        self.mask_id = net.mask_id  # == vocab_size: the oracle's mask id
        self.config = dict(config or {})
        self.seq_len_trained = int(self.config.get("seq_len", net.max_len))
        self.history: dict = {"step": [], "loss": []}

    def __repr__(self) -> str:
        c = self.net.config
        return (
            f"ToyModel(vocab_size={self.vocab_size}, width={c['width']}, depth={c['depth']}, "
            f"heads={c['heads']}, steps={self.config.get('steps', '?')})"
        )

    @property
    def device(self) -> torch.device:
        return self.net.head.weight.device

    def forward(
        self, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits over the oracle's vocabulary.

        Parameters
        ----------
        tokens : (B, L) int64
            Token ids in ``[0, V)`` and ``mask_id = V`` at masked positions.
        attention_mask : (B, L) bool, optional
            False on padding.

        Returns
        -------
        (B, L, V) float32
            Differentiable in ``train()`` mode, no autograd graph in eval mode.
        """
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
            raise TypeError(
                f"tokens must be a (B, L) int64 tensor, got {getattr(tokens, 'shape', tokens)!r}"
            )
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) > self.mask_id):
            raise ValueError(
                f"token ids must lie in [0, {self.mask_id}] (mask_id={self.mask_id}), got "
                f"[{int(tokens.min())}, {int(tokens.max())}]"
            )
        return self.net(tokens, attention_mask)[..., : self.vocab_size]  # drop the mask column


def save_toy(model: ToyModel, out: str | os.PathLike) -> None:
    """Write ``model.pt`` (the TinyTransformer's state dict) and ``toy_config.json`` to ``out``."""
    if not isinstance(model, ToyModel):
        raise TypeError(f"model must be a ToyModel, got {type(model).__name__}")
    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    torch.save(model.net.state_dict(), os.path.join(out, WEIGHTS_NAME))
    with open(os.path.join(out, CONFIG_NAME), "w") as f:
        json.dump(
            {"net": model.net.config, "train": model.config, "history": model.history}, f, indent=2
        )


def is_toy_checkpoint(path) -> bool:
    """Whether ``path`` is a directory written by ``remask.analysis.train_toy`` (``out=``)."""
    try:
        return os.path.isfile(os.path.join(os.fspath(path), CONFIG_NAME))
    except TypeError:
        return False


def load_toy(path: str | os.PathLike) -> ToyModel:
    """Load a checkpoint written by ``remask.analysis.train_toy`` (``out=path``).

    Parameters
    ----------
    path : str or PathLike
        The checkpoint directory.

    Returns
    -------
    ToyModel
        In eval mode, with its training config and loss history.
    """
    if not is_toy_checkpoint(path):
        raise ValueError(
            f"{os.fspath(path)!r} is not a train_toy checkpoint directory (no {CONFIG_NAME})"
        )
    path = os.fspath(path)
    with open(os.path.join(path, CONFIG_NAME)) as f:
        meta = json.load(f)
    net = TinyTransformer(**meta["net"])
    net.load_state_dict(
        torch.load(os.path.join(path, WEIGHTS_NAME), map_location="cpu", weights_only=True)
    )
    model = ToyModel(net, config=meta.get("train"))
    model.history = meta.get("history", {"step": [], "loss": []})
    return model.eval()
