"""Clean-room SDAR (``model_type "sdar"``) loading the original checkpoints.

``JetAstra/SDAR-*-Chat`` models are Qwen3-shaped decoders trained for block diffusion:
pre-norm layers with RMSNorm, grouped-query attention with per-head RMSNorm on queries and
keys (``q_norm``, ``k_norm``) before full "rotate-half" RoPE, scale ``head_dim^-0.5``, no
biases, a SiLU-gated MLP, names ``model.embed_tokens``, ``model.layers.N.self_attn.*``,
``model.norm``, ``lm_head``. Row i of the logits predicts position i (no shift).

SDAR decodes block by block under a block-causal mask; the block length is not part of the
published config (SDAR's ``generate.py`` uses 4), so :func:`remask.models.load_checkpoint`
takes it as ``block_size`` and wraps the model in
:class:`~remask.models.block_diffusion.BlockDiffusionDenoiser`.
"""

from __future__ import annotations

from remask.models._block_configs import SDARConfig
from remask.models._decoder import DecoderLM, DecoderSpec, qwen_spec

__all__ = ["DEFAULT_BLOCK_SIZE", "SDARConfig", "SDARForCausalLM"]

#: Block length of SDAR's own ``generate.py``.
DEFAULT_BLOCK_SIZE = 4


def sdar_spec(config: SDARConfig) -> DecoderSpec:
    """The :class:`DecoderSpec` of an SDAR config; ``ValueError`` names what is unsupported.
    As in Qwen3, ``attention_bias`` biases q/k/v and o_proj alike (false in the releases)."""
    bias = bool(getattr(config, "attention_bias", False))
    return qwen_spec(config, "sdar", qk_norm=True, qkv_bias=bias, out_bias=bias)


class SDARForCausalLM(DecoderLM):
    """SDAR with its output head; the name matches the checkpoints' ``architectures``.

    Loads through ``SDARForCausalLM.from_pretrained(dir)`` or, after ``import remask.models``,
    ``transformers.AutoModelForCausalLM.from_pretrained(dir)`` (no remote code, no
    flash-attn). See :class:`~remask.models._decoder.DecoderLM` for ``forward``.
    """

    config_class = SDARConfig
    spec_from_config = staticmethod(sdar_spec)
