"""embjax: a JAX/Flax research suite for studying token embeddings."""

from .model.embedding import AdaptiveEmbedding, FactorizedEmbedding, HashedEmbedding, TokenEmbedding, cosine

__all__ = ["TokenEmbedding", "FactorizedEmbedding", "HashedEmbedding", "AdaptiveEmbedding", "cosine"]
__version__ = "0.1.0"
