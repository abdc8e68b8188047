"""Clean-room Fast-dLLM v2 (``model_type "Fast_dLLM_Qwen"``) loading the original checkpoints.

``Efficient-Large-Model/Fast_dLLM_v2_*`` are Qwen2.5 decoders fine-tuned for block
diffusion: pre-norm layers with RMSNorm (eps 1e-6), grouped-query attention with biased
q/k/v projections (no o_proj bias, no QK-norm), full "rotate-half" RoPE, a SiLU-gated MLP;
names ``model.embed_tokens``, ``model.layers.N.self_attn.*``, ``model.norm``, ``lm_head``.

Two family conventions:

* **Shifted logits.** Like its autoregressive parent, raw row i predicts token i + 1;
  :class:`~remask.models.block_diffusion.BlockDiffusionDenoiser` shifts them (row i <- raw
  row i - 1, the first real position keeping its own row, as the family's ``generate()``
  does with ``cat([l[:, :1], l[:, :-1]])``). The first position of a block is therefore
  predicted from the last position of the finished block before it.
* **Block size.** Attention is block-causal over blocks of ``bd_size`` tokens (32). The
  released forward builds that mask itself from a ``block_size`` argument and ignores any
  ``attention_mask``; :class:`Fast_dLLM_QwenForCausalLM` honours padding masks and takes
  ``block_size`` the same way.
"""

from __future__ import annotations

from remask.models._block_configs import FastDLLMQwenConfig
from remask.models._decoder import DecoderLM, DecoderSpec, qwen_spec

__all__ = ["FastDLLMQwenConfig", "FastDLLMQwenForCausalLM", "Fast_dLLM_QwenForCausalLM"]


def fast_dllm_spec(config: FastDLLMQwenConfig) -> DecoderSpec:
    """The :class:`DecoderSpec` of a Fast-dLLM v2 config (Qwen2: q/k/v biased, no QK-norm)."""
    return qwen_spec(
        config,
        "Fast_dLLM_Qwen",
        qk_norm=False,
        qkv_bias=bool(getattr(config, "attention_bias", True)),
        out_bias=False,
    )


class Fast_dLLM_QwenForCausalLM(DecoderLM):  # noqa: N801 (the checkpoints' architectures name)
    """Fast-dLLM v2 with its output head (raw, unshifted logits).

    Loads through ``from_pretrained(dir)`` or, after ``import remask.models``,
    ``transformers.AutoModelForCausalLM.from_pretrained(dir)`` (no remote code). See
    :class:`~remask.models._decoder.DecoderLM` for ``forward``.
    """

    config_class = FastDLLMQwenConfig
    spec_from_config = staticmethod(fast_dllm_spec)


#: PEP 8 alias.
FastDLLMQwenForCausalLM = Fast_dLLM_QwenForCausalLM
