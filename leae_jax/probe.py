"""Linear probe: multinomial logistic regression on frozen, standardised codes.

One protocol for every method compared: flatten the clean code, standardise
each feature with the train split's mean and std, fit a softmax classifier
with a small L2 penalty by full-batch L-BFGS (optax), report top-1 on test.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit(x: jax.Array, y: jax.Array, *, num_classes: int, l2: float, steps: int):
  params = (jnp.zeros((x.shape[1], num_classes)), jnp.zeros((num_classes,)))

  def loss_fn(p):
    w, b = p
    logits = x @ w + b
    return (optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            + l2 * jnp.sum(w * w))

  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss_fn)

  def body(carry, _):
    p, state = carry
    value, grad = value_and_grad(p, state=state)
    updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=loss_fn)
    return (optax.apply_updates(p, updates), state), value

  (params, _), losses = jax.lax.scan(body, (params, opt.init(params)), None, length=steps)
  return params, losses


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 num_classes: int, *, l2: float = 1e-4, steps: int = 300) -> dict[str, float]:
  """Fits on train codes, returns `{'accuracy', 'train_accuracy', 'final_loss'}`."""
  train_x = np.asarray(train_x, np.float32).reshape(len(train_x), -1)
  test_x = np.asarray(test_x, np.float32).reshape(len(test_x), -1)
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  xs, xt = (train_x - mean) / std, (test_x - mean) / std
  (w, b), losses = _fit(jnp.asarray(xs), jnp.asarray(train_y, jnp.int32), num_classes=num_classes,
                        l2=l2, steps=steps)
  accuracy = lambda x, y: float(np.mean(np.argmax(np.asarray(x @ w + b), -1) == np.asarray(y)))
  return {"accuracy": accuracy(xt, test_y), "train_accuracy": accuracy(xs, train_y),
          "final_loss": float(losses[-1])}
