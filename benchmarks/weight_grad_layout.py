"""Does a fused weight-gradient product make PatchConv's gradients faster?

    taskset -c 0 python -m benchmarks.weight_grad_layout            # one task
    taskset -c 0 python -m benchmarks.weight_grad_layout --tasks 4  # vmap of 4

On this CPU, XLA runs a product in a fused YNNPACK kernel (``ynn_fusion``)
only when its left operand is contracted over its last axis. PatchConv's
weight gradient, dK = P^T dY, contracts both operands over the pixel axis,
so it runs as a plain ``dot``. The ``"transposed"`` layout keeps the forward
product and gives it a ``jax.custom_jvp`` whose weight tangent is written as
(dK^T P^T)^T behind ``jax.lax.optimization_barrier``s; transposed, that is
(dY^T P)^T with dY^T materialised, a product XLA fuses. The barriers keep
XLA from folding the transposes back into the product. Both layouts compute
the same function and derivatives (checked here).

For each layout, three jitted functions of the Omniglot 5-way 1-shot Conv4
are timed (median of ``--repeats``, per task) and the plain ``dot`` ops left
in their compiled programs counted: the support-set gradient and the
forward-over-reverse Hessian-vector product (the inner step and the CG step
of iMAML; one task, or ``vmap`` over ``--tasks``), and the whole iMAML-GD
meta-gradient (16 GD steps of 0.1, lam 2, 5 CG steps, exact system) with
its tasks taken one at a time (``task_chunk=1``), as each CPU device takes
them in the fastest layout. One JSON line per layout.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

import imaml_jax
from imaml_jax import models
from benchmarks import meta_step

_barrier = jax.lax.optimization_barrier
_t = lambda x: jnp.swapaxes(x, -1, -2)


@jax.custom_jvp
def transposed_product(p: jax.Array, k: jax.Array) -> jax.Array:
  """``p @ k``, differentiated so that dK is computed as (dY^T P)^T."""
  return p @ k


@transposed_product.defjvp
def _transposed_product_jvp(primals, tangents):
  p, k = primals
  dp, dk = tangents
  weight_tangent = _t(_barrier(_barrier(_t(dk)) @ _t(p)))
  return p @ k, dp @ k + weight_tangent


class TransposedPatchConv(models.PatchConv):
  """:class:`imaml_jax.models.PatchConv` with ``transposed_product``."""

  def product(self, patches: jax.Array, kernel: jax.Array) -> jax.Array:
    pixels = patches.reshape(-1, patches.shape[-1])   # (pixels, k * k * C)
    return transposed_product(pixels, kernel).reshape(
        *patches.shape[:-1], kernel.shape[-1])


def plain_dots(compiled_text: str) -> int:
  """Products XLA left outside fused kernels (top-level ``dot`` ops)."""
  return sum(1 for line in compiled_text.splitlines()
             if re.search(r"= \S+ dot\(", line) and "ROOT" not in line)


def compile_functions(layout: str, tasks: int) -> dict:
  """name -> (compiled function, its arguments), for one layout."""
  conv = {"plain": models.PatchConv, "transposed": TransposedPatchConv}[layout]
  with mock.patch.object(models, "PatchConv", conv):
    model = imaml_jax.omniglot_conv4(5)
    loss = imaml_jax.cross_entropy_loss(imaml_jax.apply_fn(model))
    all_tasks = meta_step.synthetic_tasks(jax.random.key(1), tasks, 5, 1, 1)
    support = all_tasks.support
    theta = imaml_jax.init_params(model, jax.random.key(0), support.x[0])
    grad = lambda p, b: jax.grad(loss)(p, b)
    hvp = lambda p, v, b: imaml_jax.hvp(loss, p, b, v)
    if tasks == 1:   # one task, no vmap
      params, support = theta, jax.tree.map(lambda x: x[0], support)
    else:
      params = jax.tree.map(lambda x: jnp.stack([x] * tasks), theta)
      grad, hvp = jax.vmap(grad), jax.vmap(hvp)
    learner = imaml_jax.imaml(loss, imaml_jax.gradient_descent(16, 0.1),
                              2.0, 5, "exact", task_chunk=1)
    meta_grad = lambda th, t: learner(th, t)[0]
    return {name: (jax.jit(fn).lower(*args).compile(), args)
            for name, fn, args in (
                ("grad", grad, (params, support)),
                ("hvp", hvp, (params, params, support)),
                ("meta_grad", meta_grad, (theta, all_tasks)))}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--tasks", type=int, default=1)
  p.add_argument("--repeats", type=int, default=300)
  p.add_argument("--rounds", type=int, default=10,
                 help="the layouts are timed in turn, repeats / rounds calls "
                      "at a time")
  a = p.parse_args(argv)
  layouts = ("plain", "transposed")
  functions = {layout: compile_functions(layout, a.tasks) for layout in layouts}
  times = {(layout, name): [] for layout in layouts for name in functions[layout]}
  values = {}
  for layout, name in times:
    fn, args = functions[layout][name]
    values[layout, name] = np.concatenate(
        [np.ravel(x) for x in jax.tree.leaves(fn(*args))])
  for name in functions["plain"]:   # same results, either layout
    np.testing.assert_allclose(values["transposed", name],
                               values["plain", name], rtol=1e-4, atol=1e-5)
  for _ in range(a.rounds):
    for (layout, name), ts in times.items():
      fn, args = functions[layout][name]
      for _ in range(max(a.repeats // a.rounds, 1)):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - start)
  for layout in layouts:
    row = {"layout": layout, "tasks": a.tasks}
    for name, (fn, _) in functions[layout].items():
      row[f"{name}_plain_dots"] = plain_dots(fn.as_text())
      row[f"{name}_us_per_task"] = round(
          1e6 * statistics.median(times[layout, name]) / a.tasks)
    print(json.dumps(row))


if __name__ == "__main__":
  main()
