"""The model wing: embedding layers (embedding), the language models built on them (models) and pretrained tables
read from files and aligned to a vocabulary (pretrained). Pure JAX/Flax; no files written, no logging."""
