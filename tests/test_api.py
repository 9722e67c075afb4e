"""The public API users import: every documented name from `embjax` itself in a fresh process (with no JAX
imported by `import embjax`), and TokenEmbedding inside a user's own NNX and Linen models, against NumPy."""

import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from tests.conftest import ROOT


def documented_names() -> list[str]:
    """The `embjax.NAME` names docs/api.md lists in its first table (before the examples)."""
    text = open(os.path.join(ROOT, "docs", "api.md")).read().split("\n## ")[0]
    return sorted(set(re.findall(r"^\| `embjax\.(\w+)`", text, re.M)))


def test_every_documented_name_imports_from_embjax_in_a_fresh_process_with_no_jax_at_import():
    import embjax

    names = documented_names()
    assert names == sorted(embjax.__all__), "docs/api.md's table and embjax.__all__ list the same names"
    code = (
        "import sys, embjax; assert 'jax' not in sys.modules and 'flax' not in sys.modules, 'JAX at import'; "
        f"missing = [n for n in {names!r} if getattr(embjax, n, None) is None]; assert not missing, missing; "
        "print(embjax.TokenEmbedding.__module__, embjax.train_run.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["embjax.model.embedding", "embjax.train.runner"]
    bad = subprocess.run([sys.executable, "-c", "import embjax; embjax.nope"], capture_output=True, text=True)
    assert "module 'embjax' has no attribute 'nope'" in bad.stderr


def test_token_embedding_inside_a_users_own_nnx_model_matches_numpy():
    from flax import nnx

    import embjax

    class Classifier(nnx.Module):  # a user's model: mean of the token vectors, then a linear layer
        def __init__(self, rngs: nnx.Rngs):
            self.embed = embjax.TokenEmbedding(11, 4, init_std=0.5, rngs=rngs)
            self.out = nnx.Linear(4, 3, rngs=rngs)

        def __call__(self, ids):
            return self.out(self.embed(ids).mean(axis=-2))

    model = Classifier(nnx.Rngs(0))
    ids = jnp.array([[1, 2, 2, 10], [0, 5, 7, 7]])
    E = np.asarray(model.embed.embedding[...], np.float64)
    W, b = np.asarray(model.out.kernel[...], np.float64), np.asarray(model.out.bias[...], np.float64)
    want = E[np.asarray(ids)].mean(axis=-2) @ W + b
    np.testing.assert_allclose(np.asarray(model(ids)), want, rtol=1e-5, atol=1e-6)

    def loss(m):
        return m(ids).sum()

    grads = nnx.grad(loss)(model)
    g = np.zeros_like(E)  # d/dE of sum(mean(E[ids]) @ W + b): each occurrence adds W's row sums / T
    for row in np.asarray(ids):
        for t in row:
            g[t] += W.sum(axis=1) / len(row)
    np.testing.assert_allclose(np.asarray(grads.embed.embedding[...]), g, rtol=1e-5, atol=1e-6)


def test_token_embedding_inside_a_users_own_linen_model_through_the_nnx_bridge():
    import flax.linen as nn
    from flax import nnx

    import embjax

    class Tagger(nn.Module):  # a Linen model holding the NNX layer (flax.nnx.bridge.to_linen)
        @nn.compact
        def __call__(self, ids):
            h = nnx.bridge.to_linen(embjax.TokenEmbedding, 13, 5, init_std=1.0, scale="sqrt_d")(ids)
            return nn.Dense(2)(h)

    ids = jnp.array([[3, 12, 0]])
    variables = Tagger().init(jax.random.key(0), ids)
    y = Tagger().apply(variables, ids)
    params = variables["params"]
    E = np.asarray(jax.tree.leaves(params["ToLinen_0"])[0], np.float64)
    assert E.shape == (13, 5) and 0.5 < E.std() < 1.5  # N(0, 1) rows, as asked
    W, b = np.asarray(params["Dense_0"]["kernel"], np.float64), np.asarray(params["Dense_0"]["bias"], np.float64)
    np.testing.assert_allclose(np.asarray(y), np.sqrt(5) * E[np.asarray(ids)] @ W + b, rtol=1e-5, atol=1e-5)
