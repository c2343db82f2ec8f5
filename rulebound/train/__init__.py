"""Training: backends (Unsloth or transformers + PEFT), ORPO/SFT/GRPO trainers, metrics and model cards."""
