"""Clean-room LLaDA-MoE (``inclusionAI/LLaDA-MoE-7B-A1B-*``) loading the original checkpoints.

LLaDA-MoE reuses ``model_type "llada"`` upstream; its config is told apart from dense
LLaDA by its MoE fields (``num_experts`` ...), see :class:`remask.models._configs.LLaDAConfig`.
Architecture: pre-norm layers with RMSNorm; multi-head attention (``q_proj`` ... ``o_proj``)
with per-head RMSNorm on queries and keys (``q_norm``, ``k_norm``, eps ``rms_norm_eps``)
before full "rotate-half" RoPE; every layer flagged in ``moe_layer_freq`` a mixture of
``num_experts`` SiLU-gated experts:

* router: softmax of the float32 router logits over the experts, then the top
  ``num_experts_per_tok``;
* mixing weights: the chosen softmax probabilities **without** renormalisation (the released
  block hard-codes ``norm_topk_prob=False`` whatever the config says); with
  ``moe_router_enable_expert_bias`` the bias is added before the top-k *and* kept in the
  weights; ``moe_router_score_function``, ``routed_scaling_factor`` and the router group
  fields are unused by the released code and ignored here;
* a shared expert when ``shared_expert_intermediate_size`` is set.

Attention is bidirectional. The released code drops any ``attention_mask``; this class and
:class:`LLaDAMoEDenoiser` honour padding (padded keys hidden, positions counted from the
first real token), which leaves unpadded rows identical. Row i predicts position i.
"""

from __future__ import annotations

import torch

from remask.models._adapter import CheckpointDenoiser
from remask.models._block_configs import LLaDAMoEConfig
from remask.models._decoder import (
    DecoderLM,
    DecoderSpec,
    MoESpec,
    check_common,
    head_dim_of,
    padding_positions,
)

__all__ = ["LLaDAMoEConfig", "LLaDAMoEDenoiser", "LLaDAMoEModelLM"]


def llada_moe_spec(config: LLaDAMoEConfig) -> DecoderSpec:
    """The :class:`DecoderSpec` of a LLaDA-MoE config; ``ValueError`` names what is unsupported."""
    check_common(config, "LLaDA-MoE")
    if getattr(config, "clip_qkv", None) is not None:
        raise ValueError(f"unsupported LLaDA-MoE config: clip_qkv={config.clip_qkv!r}")
    layers = int(config.num_hidden_layers)
    freq = config.moe_layer_freq
    if isinstance(freq, int) and not isinstance(freq, bool):
        freq = [1 if freq and i % freq == 0 else 0 for i in range(layers)]
    if not isinstance(freq, (list, tuple)) or len(freq) != layers:
        raise ValueError(
            f"LLaDA-MoE config: moe_layer_freq={freq!r} must list one 0/1 flag for each of the "
            f"num_hidden_layers={layers} layers"
        )
    head_dim = head_dim_of(config, "LLaDA-MoE")
    shared = getattr(config, "shared_expert_intermediate_size", None)
    moe = None
    if any(freq):
        moe = MoESpec(
            num_experts=config.num_experts,
            top_k=config.num_experts_per_tok,
            intermediate_size=config.expert_intermediate_size,
            score="softmax",
            expert_bias=bool(config.moe_router_enable_expert_bias),
            bias_in_weights=True,
            normalize=False,
            scaling=1.0,
            shared_intermediate_size=shared or None,
        )
    bias = bool(getattr(config, "attention_bias", False))
    return DecoderSpec(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_layers=layers,
        num_heads=config.num_attention_heads,
        num_kv_heads=config.num_key_value_heads,
        head_dim=head_dim,
        rotary_dim=int(head_dim * float(getattr(config, "partial_rotary_factor", 1.0) or 1.0)),
        rope_theta=float(config.rope_theta),
        rms_norm_eps=float(config.rms_norm_eps),
        fused_qkv=False,
        qkv_bias=bias,
        out_bias=bias,
        qk_norm=bool(config.qk_layernorm),
        intermediate_size=config.dense_intermediate_size,
        moe=moe,
        moe_layers=tuple(bool(f) for f in freq),
        tie_word_embeddings=bool(config.tie_word_embeddings),
    )


class LLaDAMoEModelLM(DecoderLM):
    """LLaDA-MoE with its output head; the name matches the checkpoints' ``architectures``.

    ``LLaDAMoEModelLM.from_pretrained(dir)`` or, after ``import remask.models``,
    ``transformers.AutoModelForCausalLM.from_pretrained(dir)`` (no remote code). See
    :class:`~remask.models._decoder.DecoderLM` for ``forward``.
    """

    config_class = LLaDAMoEConfig
    spec_from_config = staticmethod(llada_moe_spec)


class LLaDAMoEDenoiser(CheckpointDenoiser):
    """Denoiser adapter for LLaDA-MoE: full bidirectional attention, padded keys hidden,
    positions counted from each row's first real token; no logit shift."""

    family = "llada_moe"
    shift = 0

    def _forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if attention_mask is None:
            return self.model(tokens).logits
        return self.model(
            tokens, attention_mask=attention_mask, position_ids=padding_positions(attention_mask)
        ).logits
