"""Training: Ray Train + DeepSpeed launcher and the pretraining methods (DESIGN §2-4) built on it."""
