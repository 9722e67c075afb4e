"""embjax: a JAX/Flax research suite for studying token embeddings."""
from .embedding import TokenEmbedding, cosine

__all__ = ["TokenEmbedding", "cosine"]
__version__ = "0.1.0"
