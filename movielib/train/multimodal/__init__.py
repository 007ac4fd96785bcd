"""Long-range multimodal pretraining (long_range_multimodal_pretraining.txt §3-4) on the shared launcher."""
