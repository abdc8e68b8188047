"""Configuration classes for the checkpoint families remask loads natively.

They live apart from the modeling code on purpose: a config class needs only
``transformers.configuration_utils``, which is cheap to import, so ``AutoConfig`` can learn
our ``model_type`` names without pulling in ``transformers.modeling_utils`` (seconds of
import time). See :mod:`remask.models._autoreg`.

Field names and meanings follow the checkpoints' own ``config.json`` files
(GSAI-ML/LLaDA-8B-*, Dream-org/Dream-v0-*-7B, kuleshov-group/mdlm-owt), so the original files load unchanged
and save back with the same keys. Shape defaults are the published 8B / 7B / OWT values;
special-token ids default to None, so that a config.json lacking one is reported as such
instead of silently receiving the 8B value.

The classes use an explicit ``__init__`` (rather than transformers 5.x dataclass fields) so
that the same code works on transformers 4.57 and 5.x: 5.x drops generation-related keys
(``use_cache`` ...) passed through ``**kwargs``, so every field we read is set here first.
"""

from __future__ import annotations

from typing import Any

from transformers.configuration_utils import PretrainedConfig

__all__ = ["LLADA_MOE_FIELDS", "DreamConfig", "LLaDAConfig", "MDLMConfig"]

# Fields that only LLaDA-MoE configs carry. LLaDA-MoE reuses model_type "llada" (a collision
# upstream), so these are how a dense LLaDA config is told apart from a MoE one.
LLADA_MOE_FIELDS = ("num_experts", "num_experts_per_tok", "expert_intermediate_size")


class LLaDAConfig(PretrainedConfig):
    """Configuration of a dense LLaDA model (``model_type "llada"``, OLMo-derived).

    Parameters mirror the ``config.json`` of ``GSAI-ML/LLaDA-8B-*`` (and LLaDA 1.5);
    unknown keys are kept as attributes and saved back. Only the options the released
    checkpoints use are implemented by :class:`remask.models.llada.LLaDAModelLM`; it raises a
    ``ValueError`` naming any other setting.
    """

    model_type = "llada"

    def __init__(
        self,
        d_model: int = 4096,
        n_heads: int = 32,
        n_kv_heads: int | None = None,
        n_layers: int = 32,
        mlp_hidden_size: int | None = 12288,
        mlp_ratio: int = 4,
        max_sequence_length: int = 4096,
        vocab_size: int = 126464,
        embedding_size: int | None = 126464,
        rope: bool = True,
        rope_theta: float = 500000.0,
        rope_full_precision: bool = True,
        rms_norm_eps: float = 1e-5,
        layer_norm_type: str = "rms",
        layer_norm_with_affine: bool = True,
        bias_for_layer_norm: bool | None = False,
        attention_layer_norm: bool = False,
        attention_layer_norm_with_affine: bool = True,
        activation_type: str = "silu",
        block_type: str = "llama",
        block_group_size: int = 1,
        include_bias: bool = False,
        include_qkv_bias: bool | None = False,
        multi_query_attention: bool | None = None,
        alibi: bool = False,
        alibi_bias_max: float = 8.0,
        clip_qkv: float | None = None,
        input_emb_norm: bool = False,
        scale_logits: bool = False,
        weight_tying: bool = False,
        attention_dropout: float = 0.0,
        residual_dropout: float = 0.0,
        embedding_dropout: float = 0.0,
        flash_attention: bool = False,
        init_device: str | None = "meta",
        init_fn: str = "mitchell",
        init_std: float = 0.02,
        init_cutoff_factor: float | None = None,
        precision: str | None = "amp_bf16",
        use_cache: bool = False,
        mask_token_id: int | None = None,
        eos_token_id: int | list[int] | None = None,
        pad_token_id: int | None = None,
        bos_token_id: int | None = None,
        **kwargs: Any,
    ) -> None:
        # LLaDA's weights are never tied through transformers' machinery: `weight_tying` is
        # the family's own switch and the model class honours it directly.
        kwargs.pop("tie_word_embeddings", None)
        # The base __init__ runs first: transformers 4.x resets special-token ids and
        # tie_word_embeddings to its own defaults, so our values must be assigned after it.
        super().__init__(**kwargs)
        self.tie_word_embeddings = False
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.n_layers = n_layers
        self.mlp_hidden_size = mlp_hidden_size
        self.mlp_ratio = mlp_ratio
        self.max_sequence_length = max_sequence_length
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.rope = rope
        self.rope_theta = rope_theta
        self.rope_full_precision = rope_full_precision
        self.rms_norm_eps = rms_norm_eps
        self.layer_norm_type = layer_norm_type
        self.layer_norm_with_affine = layer_norm_with_affine
        self.bias_for_layer_norm = bias_for_layer_norm
        self.attention_layer_norm = attention_layer_norm
        self.attention_layer_norm_with_affine = attention_layer_norm_with_affine
        self.activation_type = activation_type
        self.block_type = block_type
        self.block_group_size = block_group_size
        self.include_bias = include_bias
        self.include_qkv_bias = include_qkv_bias
        self.multi_query_attention = multi_query_attention
        self.alibi = alibi
        self.alibi_bias_max = alibi_bias_max
        self.clip_qkv = clip_qkv
        self.input_emb_norm = input_emb_norm
        self.scale_logits = scale_logits
        self.weight_tying = weight_tying
        self.attention_dropout = attention_dropout
        self.residual_dropout = residual_dropout
        self.embedding_dropout = embedding_dropout
        self.flash_attention = flash_attention
        self.init_device = init_device
        self.init_fn = init_fn
        self.init_std = init_std
        self.init_cutoff_factor = init_cutoff_factor
        self.precision = precision
        self.use_cache = use_cache
        self.mask_token_id = mask_token_id
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> PretrainedConfig:
        """Build the config; a LLaDA-MoE dict (``model_type "llada"`` with MoE fields) gives a
        :class:`~remask.models._block_configs.LLaDAMoEConfig`, so that ``AutoConfig`` and the
        Auto model classes resolve LLaDA-MoE checkpoints to remask's LLaDA-MoE class."""
        if cls is LLaDAConfig and any(name in config_dict for name in LLADA_MOE_FIELDS):
            from remask.models._block_configs import LLaDAMoEConfig

            return LLaDAMoEConfig.from_dict(config_dict, **kwargs)
        return super().from_dict(config_dict, **kwargs)

    @property
    def effective_n_kv_heads(self) -> int:
        """Number of key/value heads, resolved the way OLMo-style configs define it."""
        if self.n_kv_heads is not None:
            return int(self.n_kv_heads)
        return 1 if self.multi_query_attention else int(self.n_heads)

    @property
    def effective_mlp_hidden_size(self) -> int:
        """Width of the gated MLP (``mlp_hidden_size``, else ``mlp_ratio * d_model``)."""
        if self.mlp_hidden_size is not None:
            return int(self.mlp_hidden_size)
        return int(self.mlp_ratio * self.d_model)

    @property
    def effective_embedding_size(self) -> int:
        """Rows of the embedding and of the output head (``embedding_size``, else vocab)."""
        return int(self.embedding_size if self.embedding_size is not None else self.vocab_size)


class DreamConfig(PretrainedConfig):
    """Configuration of a Dream / DiffuCoder model (``model_type "Dream"``, Qwen2-shaped).

    Parameters mirror ``Dream-org/Dream-v0-*-7B`` and ``apple/DiffuCoder-7B-*``
    ``config.json`` files. Sliding-window attention and RoPE scaling are recorded but not
    implemented (the released checkpoints use neither); the model class raises on them.
    """

    model_type = "Dream"

    def __init__(
        self,
        vocab_size: int = 152064,
        hidden_size: int = 3584,
        intermediate_size: int = 18944,
        num_hidden_layers: int = 28,
        num_attention_heads: int = 28,
        num_key_value_heads: int | None = 4,
        hidden_act: str = "silu",
        max_position_embeddings: int = 131072,
        initializer_range: float = 0.02,
        rms_norm_eps: float = 1e-6,
        use_cache: bool = False,
        tie_word_embeddings: bool = False,
        rope_theta: float = 1000000.0,
        rope_scaling: dict | None = None,
        use_sliding_window: bool = False,
        sliding_window: int | None = None,
        max_window_layers: int = 28,
        attention_dropout: float = 0.0,
        mask_token_id: int | None = None,
        pad_token_id: int | None = None,
        bos_token_id: int | None = None,
        eos_token_id: int | list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        # Base __init__ first: transformers 4.x resets token ids and tie_word_embeddings.
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = (
            num_attention_heads if num_key_value_heads is None else num_key_value_heads
        )
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.use_cache = use_cache
        self.rope_theta = rope_theta
        if rope_scaling is not None:
            # Only when set: transformers 5.x turns `rope_scaling` into `rope_parameters`
            # with a FutureWarning, which the released checkpoints (all null) need not see.
            self.rope_scaling = rope_scaling
        self.use_sliding_window = use_sliding_window
        self.sliding_window = sliding_window
        self.max_window_layers = max_window_layers
        self.attention_dropout = attention_dropout
        self.mask_token_id = mask_token_id
        self.pad_token_id = pad_token_id
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.tie_word_embeddings = tie_word_embeddings


class MDLMConfig(PretrainedConfig):
    """Configuration of an MDLM DiT backbone (``model_type "mdlm"``, e.g. ``mdlm-owt``).

    ``vocab_size`` counts the logit columns *including* the mask, which MDLM appends after
    the tokenizer's vocabulary (GPT-2: 50257 tokens + mask 50257 = 50258 columns).
    ``mask_token_id`` is not part of the upstream config; when absent, the adapter uses that
    family convention (the last column).
    """

    model_type = "mdlm"

    def __init__(
        self,
        vocab_size: int = 50258,
        model_length: int = 1024,
        hidden_dim: int = 768,
        cond_dim: int = 128,
        n_blocks: int = 12,
        n_heads: int = 12,
        dropout: float = 0.1,
        time_conditioning: bool = False,
        mask_token_id: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.model_length = model_length
        self.hidden_dim = hidden_dim
        self.cond_dim = cond_dim
        self.n_blocks = n_blocks
        self.n_heads = n_heads
        self.dropout = dropout
        self.time_conditioning = time_conditioning
        self.mask_token_id = mask_token_id
