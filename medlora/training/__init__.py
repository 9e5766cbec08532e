"""LoRA training with PEFT and the HF Trainer (so ``accelerate launch`` scales it unchanged)."""
