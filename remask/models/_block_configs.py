"""Configuration classes of LLaDA 2.x, LLaDA-MoE, SDAR and Fast-dLLM v2 (cheap to import).

Like :mod:`remask.models._configs`, they need only ``transformers.configuration_utils`` so
that ``AutoConfig`` can learn the ``model_type`` names without importing the modeling code.
Field names follow each family's published ``config.json``; every key a checkpoint carries
is kept (unknown ones as attributes) and saved back. Shape defaults are placeholders of a
small model: real checkpoints carry every field. Special-token ids default to None (no
family keeps its mask id in ``config.json``; see :func:`remask.models.load_checkpoint`).

LLaDA-MoE shares ``model_type "llada"`` with dense LLaDA upstream, so
:class:`LLaDAMoEConfig` is not registered with ``AutoConfig`` under its own name:
``LLaDAConfig.from_dict`` hands a config dict with MoE fields over to it.
"""

from __future__ import annotations

from typing import Any

from transformers.configuration_utils import PretrainedConfig

__all__ = ["FastDLLMQwenConfig", "LLaDA2MoeConfig", "LLaDAMoEConfig", "SDARConfig"]


def _set(config: PretrainedConfig, values: dict[str, Any]) -> None:
    for name, value in values.items():
        setattr(config, name, value)


class LLaDA2MoeConfig(PretrainedConfig):
    """LLaDA 2.0 / 2.1 (``model_type "llada2_moe"``, ``inclusionAI/LLaDA2.x-mini|flash``).

    Partial RoPE (``partial_rotary_factor``), QK-norm, fused QKV projection; the first
    ``first_k_dense_replace`` layers are dense, the rest mixtures of ``num_experts`` experts
    (sigmoid router with ``expert_bias``, group-limited top-k, ``num_shared_experts``).
    """

    model_type = "llada2_moe"

    def __init__(
        self,
        vocab_size: int = 157184,
        hidden_size: int = 2048,
        intermediate_size: int = 5120,
        num_hidden_layers: int = 20,
        num_attention_heads: int = 16,
        num_key_value_heads: int = 4,
        head_dim: int | None = 128,
        hidden_act: str = "silu",
        max_position_embeddings: int = 32768,
        rms_norm_eps: float = 1e-6,
        rope_theta: float = 600000.0,
        partial_rotary_factor: float = 0.5,
        rope_scaling: dict | None = None,
        use_qkv_bias: bool = False,
        use_bias: bool = False,
        use_qk_norm: bool = True,
        num_experts: int = 256,
        num_shared_experts: int | None = 1,
        num_experts_per_tok: int = 8,
        n_group: int = 8,
        topk_group: int = 4,
        moe_intermediate_size: int = 512,
        first_k_dense_replace: int = 1,
        routed_scaling_factor: float = 2.5,
        score_function: str = "sigmoid",
        moe_router_enable_expert_bias: bool = True,
        norm_topk_prob: bool = True,
        router_dtype: str = "fp32",
        tie_word_embeddings: bool = False,
        use_cache: bool = False,
        mask_token_id: int | None = None,
        pad_token_id: int | None = None,
        eos_token_id: int | list[int] | None = None,
        bos_token_id: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _set(
            self,
            dict(
                vocab_size=vocab_size,
                hidden_size=hidden_size,
                intermediate_size=intermediate_size,
                num_hidden_layers=num_hidden_layers,
                num_attention_heads=num_attention_heads,
                num_key_value_heads=num_key_value_heads,
                head_dim=head_dim,
                hidden_act=hidden_act,
                max_position_embeddings=max_position_embeddings,
                rms_norm_eps=rms_norm_eps,
                rope_theta=rope_theta,
                partial_rotary_factor=partial_rotary_factor,
                use_qkv_bias=use_qkv_bias,
                use_bias=use_bias,
                use_qk_norm=use_qk_norm,
                num_experts=num_experts,
                num_shared_experts=num_shared_experts,
                num_experts_per_tok=num_experts_per_tok,
                n_group=n_group,
                topk_group=topk_group,
                moe_intermediate_size=moe_intermediate_size,
                first_k_dense_replace=first_k_dense_replace,
                routed_scaling_factor=routed_scaling_factor,
                score_function=score_function,
                moe_router_enable_expert_bias=moe_router_enable_expert_bias,
                norm_topk_prob=norm_topk_prob,
                router_dtype=router_dtype,
                use_cache=use_cache,
                mask_token_id=mask_token_id,
                pad_token_id=pad_token_id,
                eos_token_id=eos_token_id,
                bos_token_id=bos_token_id,
                tie_word_embeddings=tie_word_embeddings,
            ),
        )
        if rope_scaling is not None:
            self.rope_scaling = rope_scaling


class LLaDAMoEConfig(PretrainedConfig):
    """LLaDA-MoE-7B-A1B (``model_type "llada"`` with MoE fields, ``LLaDAMoEModelLM``).

    Defaults are the published 7B-A1B values (16 layers, hidden 2048, 16 heads, 64 experts,
    top-8, expert width 1024, θ 5e4, vocab 157184).
    """

    model_type = "llada"

    def __init__(
        self,
        vocab_size: int = 157184,
        hidden_size: int = 2048,
        dense_intermediate_size: int = 8192,
        expert_intermediate_size: int = 1024,
        shared_expert_intermediate_size: int | None = None,
        num_hidden_layers: int = 16,
        num_attention_heads: int = 16,
        num_key_value_heads: int | None = 16,
        hidden_act: str = "silu",
        max_position_embeddings: int = 8192,
        rms_norm_eps: float = 1e-5,
        rope_theta: float = 50000.0,
        partial_rotary_factor: float = 1.0,
        rope_scaling: dict | None = None,
        attention_bias: bool = False,
        clip_qkv: float | None = None,
        num_experts: int = 64,
        num_experts_per_tok: int = 8,
        router_aux_loss_coef: float = 0.01,
        norm_topk_prob: bool = False,
        qk_layernorm: bool = True,
        moe_layer_freq: list[int] | None = None,
        moe_router_enable_expert_bias: bool = False,
        moe_router_score_function: str = "softmax",
        routed_scaling_factor: float = 1.0,
        router_num_group: int | None = None,
        router_topk_group: int | None = None,
        tie_word_embeddings: bool = False,
        use_cache: bool = False,
        mask_token_id: int | None = None,
        pad_token_id: int | None = None,
        eos_token_id: int | list[int] | None = None,
        bos_token_id: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _set(
            self,
            dict(
                vocab_size=vocab_size,
                hidden_size=hidden_size,
                dense_intermediate_size=dense_intermediate_size,
                expert_intermediate_size=expert_intermediate_size,
                shared_expert_intermediate_size=shared_expert_intermediate_size,
                num_hidden_layers=num_hidden_layers,
                num_attention_heads=num_attention_heads,
                num_key_value_heads=num_attention_heads
                if num_key_value_heads is None
                else num_key_value_heads,
                hidden_act=hidden_act,
                max_position_embeddings=max_position_embeddings,
                rms_norm_eps=rms_norm_eps,
                rope_theta=rope_theta,
                partial_rotary_factor=partial_rotary_factor,
                attention_bias=attention_bias,
                clip_qkv=clip_qkv,
                num_experts=num_experts,
                num_experts_per_tok=num_experts_per_tok,
                router_aux_loss_coef=router_aux_loss_coef,
                norm_topk_prob=norm_topk_prob,
                qk_layernorm=qk_layernorm,
                moe_layer_freq=[1] * num_hidden_layers
                if moe_layer_freq is None
                else moe_layer_freq,
                moe_router_enable_expert_bias=moe_router_enable_expert_bias,
                moe_router_score_function=moe_router_score_function,
                routed_scaling_factor=routed_scaling_factor,
                router_num_group=router_num_group,
                router_topk_group=router_topk_group,
                use_cache=use_cache,
                mask_token_id=mask_token_id,
                pad_token_id=pad_token_id,
                eos_token_id=eos_token_id,
                bos_token_id=bos_token_id,
                tie_word_embeddings=tie_word_embeddings,
            ),
        )
        if rope_scaling is not None:
            self.rope_scaling = rope_scaling


class _QwenLikeConfig(PretrainedConfig):
    """Fields shared by the Qwen2/Qwen3-shaped block-diffusion families."""

    def __init__(
        self,
        vocab_size: int = 151936,
        hidden_size: int = 1024,
        intermediate_size: int = 3072,
        num_hidden_layers: int = 28,
        num_attention_heads: int = 16,
        num_key_value_heads: int | None = 8,
        head_dim: int | None = None,
        hidden_act: str = "silu",
        max_position_embeddings: int = 32768,
        rms_norm_eps: float = 1e-6,
        rope_theta: float = 1000000.0,
        rope_scaling: dict | None = None,
        attention_bias: bool = False,
        use_sliding_window: bool = False,
        sliding_window: int | None = None,
        tie_word_embeddings: bool = False,
        use_cache: bool = False,
        mask_token_id: int | None = None,
        pad_token_id: int | None = None,
        eos_token_id: int | list[int] | None = None,
        bos_token_id: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _set(
            self,
            dict(
                vocab_size=vocab_size,
                hidden_size=hidden_size,
                intermediate_size=intermediate_size,
                num_hidden_layers=num_hidden_layers,
                num_attention_heads=num_attention_heads,
                num_key_value_heads=num_attention_heads
                if num_key_value_heads is None
                else num_key_value_heads,
                head_dim=head_dim,
                hidden_act=hidden_act,
                max_position_embeddings=max_position_embeddings,
                rms_norm_eps=rms_norm_eps,
                rope_theta=rope_theta,
                attention_bias=attention_bias,
                use_sliding_window=use_sliding_window,
                sliding_window=sliding_window,
                use_cache=use_cache,
                mask_token_id=mask_token_id,
                pad_token_id=pad_token_id,
                eos_token_id=eos_token_id,
                bos_token_id=bos_token_id,
                tie_word_embeddings=tie_word_embeddings,
            ),
        )
        if rope_scaling is not None:
            self.rope_scaling = rope_scaling


class SDARConfig(_QwenLikeConfig):
    """SDAR (``model_type "sdar"``, ``JetAstra/SDAR-*-Chat``): the Qwen3 layout (QK-norm, no
    biases, explicit ``head_dim``) trained for block diffusion. The published config has no
    block size; the decoding block length (4 in SDAR's own ``generate.py``) is chosen at load
    time."""

    model_type = "sdar"

    def __init__(self, **kwargs: Any) -> None:
        # The published config asks for "flex_attention"; transformers would refuse to build
        # a class that does not declare it. remask's layers always run their own SDPA
        # attention, so the request is dropped (it names a kernel, not the model).
        kwargs.pop("attn_implementation", None)
        super().__init__(**kwargs)


class FastDLLMQwenConfig(_QwenLikeConfig):
    """Fast-dLLM v2 (``model_type "Fast_dLLM_Qwen"``, ``Efficient-Large-Model/Fast_dLLM_v2_*``):
    the Qwen2.5 layout (QKV bias) with block-causal attention of ``bd_size`` (32) tokens and
    autoregressive-style shifted logits."""

    model_type = "Fast_dLLM_Qwen"

    def __init__(self, bd_size: int = 32, attention_bias: bool = True, **kwargs: Any) -> None:
        super().__init__(attention_bias=attention_bias, **kwargs)
        self.bd_size = bd_size
