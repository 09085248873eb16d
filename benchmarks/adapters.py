"""What keeping LoRA adapters apart from their base saves: the package's weights of a SmolLM2-135M-shaped Llama
(random init, fp32: the shape `luodi import-gguf` gives the real one) saved whole, as a full fine-tune's package
holds them, vs the rank-8 adapters (PEFT's default target modules, q_proj and v_proj) an adapter package holds; and
the time to check the base's sha256 when an adapter package loads.

    .venv/bin/python benchmarks/adapters.py     # about 30 s and 600 MB of temporary disk
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from pathlib import Path

from results_file import write_result  # benchmarks/ is on sys.path when a script runs


def main() -> None:
    from peft import LoraConfig, get_peft_model
    from peft.utils import get_peft_model_state_dict
    from transformers import LlamaConfig, LlamaForCausalLM

    from luodi.checkpoints import checkpoint_digest
    from luodi.package import write_tensors

    warnings.filterwarnings("ignore", category=FutureWarning)  # PEFT asks transformers 5 for a renamed attribute
    folder = Path(tempfile.mkdtemp(prefix="luodi-adapters-"))
    try:
        config = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                             num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                             tie_word_embeddings=True)
        model = LlamaForCausalLM(config)
        model.save_pretrained(str(folder / "base"))
        start = time.perf_counter()
        checkpoint_digest(folder / "base")
        digest_s = time.perf_counter() - start
        adapted = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, task_type="CAUSAL_LM"))
        write_tensors(folder / "adapter.safetensors", get_peft_model_state_dict(adapted, save_embedding_layers=False))
        full = (folder / "base" / "model.safetensors").stat().st_size
        adapter = (folder / "adapter.safetensors").stat().st_size
    finally:
        shutil.rmtree(folder)
    print(f"full weights {full / 1e6:.1f} MB, rank-8 adapters {adapter / 1e6:.2f} MB: {full / adapter:.0f}x smaller; "
          f"checking the base's sha256 took {digest_s:.2f} s")
    write_result("adapters", {"full_bytes": full, "adapter_bytes": adapter, "ratio": full / adapter,
                              "base_sha256_s": digest_s}, quick=False)


if __name__ == "__main__":
    main()
