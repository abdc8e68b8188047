"""Clean-room LLaDA 2.0 / 2.1 (``model_type "llada2_moe"``) loading the original checkpoints.

``inclusionAI/LLaDA2.0-mini|flash`` and ``LLaDA2.1-*`` share one architecture: pre-norm
layers with RMSNorm; one fused ``query_key_value`` projection split as
[H·Dh | H_kv·Dh | H_kv·Dh]; per-head RMSNorm on queries and keys (``query_layernorm``,
``key_layernorm``) before RoPE; RoPE on the first ``head_dim · partial_rotary_factor``
channels of each head; no biases; the first ``first_k_dense_replace`` layers have a dense
gated MLP and the others a mixture of experts:

* router logits in float32, scores ``s = sigmoid(logits)``;
* selection on ``s + expert_bias``: the ``topk_group`` best of ``n_group`` groups (a group
  ranks by the sum of its 2 best biased scores), then the top ``num_experts_per_tok``
  experts inside them;
* mixing weights: the *unbiased* ``s`` of the chosen experts divided by their sum (+1e-20;
  the released code always normalises when more than one expert is chosen, whatever
  ``norm_topk_prob`` says), times ``routed_scaling_factor``;
* a shared expert of width ``moe_intermediate_size · num_shared_experts``, ungated.

Parameter names are the checkpoint's (``model.word_embeddings``,
``model.layers.N.attention.{query_key_value,dense,query_layernorm,key_layernorm}``,
``mlp.gate.{weight,expert_bias}``, ``mlp.experts.E.*``, ``mlp.shared_experts.*``,
``model.norm``, ``lm_head``). Row i of the logits predicts position i (no shift).

LLaDA 2.x decodes block by block under a block-causal mask (block i attends blocks <= i);
:func:`remask.models.load_checkpoint` wraps it in
:class:`~remask.models.block_diffusion.BlockDiffusionDenoiser` (default block 32, its
``generate()`` default). The released code's 2-D-mask and eager paths turn attention causal;
that is a bug of those paths, not the model, and is not reproduced.
"""

from __future__ import annotations

from remask.models._block_configs import LLaDA2MoeConfig
from remask.models._decoder import DecoderLM, DecoderSpec, MoESpec, check_common, head_dim_of

__all__ = ["DEFAULT_BLOCK_SIZE", "LLaDA2MoeConfig", "LLaDA2MoeModelLM"]

#: Block length of LLaDA 2.x's own ``generate()``.
DEFAULT_BLOCK_SIZE = 32


def llada2_spec(config: LLaDA2MoeConfig) -> DecoderSpec:
    """The :class:`DecoderSpec` of a LLaDA 2.x config; ``ValueError`` names what is unsupported."""
    check_common(config, "llada2_moe")
    head_dim = head_dim_of(config, "llada2_moe")
    rotary = int(head_dim * float(getattr(config, "partial_rotary_factor", 1.0)))
    stated = getattr(config, "rotary_dim", None)
    if stated is not None and int(stated) != rotary:
        raise ValueError(
            f"llada2_moe config: rotary_dim={stated} contradicts head_dim·partial_rotary_factor={rotary}"
        )
    shared = getattr(config, "num_shared_experts", None)
    layers = int(config.num_hidden_layers)
    dense = int(config.first_k_dense_replace)
    if not 0 <= dense <= layers:
        raise ValueError(
            f"llada2_moe config: first_k_dense_replace={dense} is outside [0, num_hidden_layers={layers}]"
        )
    moe = None
    if dense < layers:
        moe = MoESpec(
            num_experts=config.num_experts,
            top_k=config.num_experts_per_tok,
            intermediate_size=config.moe_intermediate_size,
            score=getattr(config, "score_function", "sigmoid"),
            n_group=config.n_group or 1,
            topk_group=config.topk_group or 1,
            expert_bias=bool(config.moe_router_enable_expert_bias),
            bias_in_weights=False,
            normalize=True,
            scaling=float(config.routed_scaling_factor),
            shared_intermediate_size=config.moe_intermediate_size * shared if shared else None,
        )
    return DecoderSpec(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        num_layers=layers,
        num_heads=config.num_attention_heads,
        num_kv_heads=config.num_key_value_heads,
        head_dim=head_dim,
        rotary_dim=rotary,
        rope_theta=float(config.rope_theta),
        rms_norm_eps=float(config.rms_norm_eps),
        fused_qkv=True,
        qkv_bias=bool(config.use_qkv_bias),
        out_bias=bool(config.use_bias),
        qk_norm=bool(config.use_qk_norm),
        intermediate_size=config.intermediate_size,
        moe=moe,
        moe_layers=tuple(i >= dense for i in range(layers)),
        embed_name="word_embeddings",
        tie_word_embeddings=bool(config.tie_word_embeddings),
    )


class LLaDA2MoeModelLM(DecoderLM):
    """LLaDA 2.x with its output head; the name matches the checkpoints' ``architectures``.

    ``LLaDA2MoeModelLM.from_pretrained(dir)`` or, after ``import remask.models``,
    ``transformers.AutoModelForCausalLM.from_pretrained(dir)`` (no remote code). See
    :class:`~remask.models._decoder.DecoderLM` for ``forward``.
    """

    config_class = LLaDA2MoeConfig
    spec_from_config = staticmethod(llada2_spec)
