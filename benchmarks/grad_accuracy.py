"""How accurate is the implicit meta-gradient? CG steps x lam x linear system.

    python -m benchmarks.grad_accuracy --out docs/figures/grad_accuracy.png
    python -m benchmarks.grad_accuracy --filters 4 --train_steps 50   # quick

On real Omniglot 5-way 1-shot tasks and a Conv4 small enough (``--filters``,
default 8: about 2,000 parameters) for its Hessian to be formed densely, each
task is adapted as in training (16 GD steps of 0.1 on G) and the meta-gradient
is computed three ways:

* exact: the dense solve of the paper's system (I + H/lam) v = g (Lemma 1);
* the CG answer after k = 1..20 steps on the exact, damped and Gauss-Newton
  systems (what training uses);

and each CG answer is compared with the exact one by cosine similarity and
relative error ||v_k - v|| / ||v||, and with the dense solution of its own
system (how fast CG converges on it), averaged over ``--tasks`` tasks. This is
done at initialisation and after ``--train_steps`` meta-steps of iMAML-GD
(Gauss-Newton system, meta-batch 8), for each lam. The smallest eigenvalue of
I + H/lam is reported too: below zero the paper's system is indefinite.
Prints one JSON line per (phase, lam, system, k) and saves a PNG.
"""

from __future__ import annotations

import argparse
import datetime
import json

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
import numpy as np
import optax

import imaml_jax
from experiments import common
from imaml_jax.data import omniglot

SYSTEMS = ("exact", "damped", "gauss_newton")


def cg_history(matvec, b, steps):
  """Every iterate x_1..x_steps of plain CG on A x = b from x_0 = 0."""

  def body(state, _):
    x, r, p, rr = state
    ap = matvec(p)
    pap = jnp.vdot(p, ap)
    # Once CG has converged exactly (rr = 0), later iterates stay put.
    alpha = jnp.where(rr > 0, rr / jnp.where(pap == 0, 1.0, pap), 0.0)
    x, r = x + alpha * p, r - alpha * ap
    rr_new = jnp.vdot(r, r)
    beta = jnp.where(rr > 0, rr_new / jnp.where(rr > 0, rr, 1.0), 0.0)
    return (x, r, r + beta * p, rr_new), x

  init = (jnp.zeros_like(b), b, b, jnp.vdot(b, b))
  return jax.lax.scan(body, init, None, length=steps)[1]


def measure(loss, theta, tasks, lam, max_cg, inner_steps, inner_lr,
            solver=None):
  """Per task and system: CG iterates against the dense solutions.

  Each task is adapted by ``solver`` (default: ``inner_steps`` GD steps of
  ``inner_lr``, as in training).

  Returns, per system, the cosine and relative error of each iterate v_k
  against the paper's exact solution (I + H/lam)^-1 g, the relative error
  against the dense solution of that system itself (how fast CG converges
  on it), the smallest eigenvalue of the system's matrix, and the distance
  between iterate 5 and the library's implicit gradient.
  """
  solver = solver or imaml_jax.gradient_descent(inner_steps, inner_lr)

  def one(task):
    adapt = imaml_jax.implicit_adapt(loss, solver, lam)
    phi, _ = adapt.solve(theta, task.support)
    g = jax.grad(loss)(phi, task.query)
    flat_phi, unravel = ravel_pytree(phi)
    flat_g = ravel_pytree(g)[0]
    eye = jnp.eye(flat_phi.size, dtype=flat_g.dtype)
    out, exact = {}, None
    for system in SYSTEMS:   # "exact" first: the reference of the others
      matvec = imaml_jax.implicit.resolve_system(system)(
          imaml_jax.TaskObjective(loss, lam, theta, task.support), phi)
      flat_matvec = lambda z, m=matvec: ravel_pytree(m(unravel(z)))[0]
      matrix = jax.lax.map(flat_matvec, eye)   # symmetric: rows = columns
      matrix = (matrix + matrix.T) / 2
      own = jnp.linalg.solve(matrix, flat_g)
      exact = own if exact is None else exact
      xs = cg_history(flat_matvec, flat_g, max_cg)
      cos = xs @ exact / (jnp.linalg.norm(xs, axis=1)
                          * jnp.linalg.norm(exact))
      err = jnp.linalg.norm(xs - exact, axis=1) / jnp.linalg.norm(exact)
      err_own = jnp.linalg.norm(xs - own, axis=1) / jnp.linalg.norm(own)
      # The library's implicit gradient (jax's CG) is iterate 5 of this CG.
      v5 = imaml_jax.implicit_adapt(loss, solver, lam, cg_steps=5,
                                    system=system).implicit_gradient(
                                        phi, task.support, g)[0]
      check = jnp.linalg.norm(ravel_pytree(v5)[0] - xs[4]) / jnp.linalg.norm(
          xs[4])
      out[system] = (cos, err, err_own, jnp.linalg.eigvalsh(matrix)[0], check)
    return out

  return jax.lax.map(one, tasks)


def meta_train(loss, theta, images, a):
  learner = imaml_jax.imaml(loss, imaml_jax.gradient_descent(16, 0.1), a.lam[0],
                            system="gauss_newton")
  opt = optax.adam(1e-3)
  sample = lambda k, data: imaml_jax.sample_episodes(k, data, 8, 5, 1, 5)
  step = imaml_jax.make_meta_step(learner, opt, sample)
  state, _ = imaml_jax.run(step, imaml_jax.init_train_state(theta, opt),
                           jax.random.key(3), a.train_steps, progress=True,
                           data=images)
  return state.params


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default="grad_accuracy.png")
  p.add_argument("--filters", type=int, default=8)
  p.add_argument("--tasks", type=int, default=8)
  p.add_argument("--lam", type=lambda s: [float(x) for x in s.split(",")],
                 default=[0.5, 2.0])
  p.add_argument("--max_cg", type=int, default=20)
  p.add_argument("--train_steps", type=int, default=500)
  p.add_argument("--data_dir", default="")
  a = p.parse_args(argv)
  if a.max_cg < 5:
    p.error(f"--max_cg must be >= 5 (iterate 5 is checked against jax's CG), "
            f"got {a.max_cg}")
  jax.config.update("jax_default_matmul_precision", "highest")

  model = imaml_jax.Conv4(5, filters=a.filters)
  loss = imaml_jax.cross_entropy_loss(imaml_jax.apply_fn(model))
  train = imaml_jax.with_rotations(jax.device_put(omniglot.load_omniglot(
      "train", data_dir=a.data_dir or None,
      source_dir=common.default_source_dir("omniglot"))))
  tasks = imaml_jax.sample_episodes(jax.random.key(1), train, a.tasks, 5, 1, 5)
  theta = imaml_jax.init_params(model, jax.random.key(0), tasks.support.x[0])
  size = ravel_pytree(theta)[0].size
  phases = {"initialisation": theta}
  if a.train_steps:
    phases[f"after {a.train_steps} meta-steps"] = meta_train(loss, theta, train,
                                                             a)
  # lam is an argument of the jitted function: one compile for every lam.
  jitted = jax.jit(lambda th, t, lam: measure(loss, th, t, lam, a.max_cg, 16,
                                              0.1))
  rows = []
  for phase, params in phases.items():
    for lam in a.lam:
      out = jitted(params, tasks, lam)
      min_eig = np.asarray(out["exact"][3])
      for system in SYSTEMS:
        cos, err, err_own, sys_eig, check = (np.asarray(x)
                                             for x in out[system])
        if check.max() > 1e-3:
          raise AssertionError(f"jax's CG and the recorded CG disagree at 5 "
                               f"steps ({system}): {check.max():.2e}")
        for k in range(a.max_cg):
          rows.append({"phase": phase, "lam": lam, "system": system,
                       "cg_steps": k + 1, "cosine": float(cos[:, k].mean()),
                       "cosine_min": float(cos[:, k].min()),
                       "relative_error": float(err[:, k].mean()),
                       "relative_error_own": float(err_own[:, k].mean()),
                       "system_min_eig_min": float(sys_eig.min()),
                       "min_eig_mean": float(min_eig.mean()),
                       "min_eig_min": float(min_eig.min()),
                       "params": int(size)})
          print(json.dumps(rows[-1]), flush=True)
  plot(rows, a, size)


def plot(rows, a, size):
  import matplotlib   # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")   # here, not at import: notebooks use the harness
  import matplotlib.pyplot as plt   # pylint: disable=import-outside-toplevel
  phases = list(dict.fromkeys(r["phase"] for r in rows))
  fig, axes = plt.subplots(3, len(phases) * len(a.lam),
                           figsize=(4 * len(phases) * len(a.lam), 9.6),
                           squeeze=False)
  col = 0
  for phase in phases:
    for lam in a.lam:
      sel = [r for r in rows if r["phase"] == phase and r["lam"] == lam]
      for system in SYSTEMS:
        pts = [r for r in sel if r["system"] == system]
        ks = [r["cg_steps"] for r in pts]
        axes[0, col].plot(ks, [r["cosine"] for r in pts], label=system)
        axes[1, col].plot(ks, [r["relative_error"] for r in pts], label=system)
        axes[2, col].plot(ks, [r["relative_error_own"] for r in pts],
                          label=system)
      axes[0, col].set_title(f"{phase}, lam {lam}\nmin eig(I + H/lam) "
                             f"{sel[0]['min_eig_min']:.2f}", fontsize=9)
      axes[0, col].set_ylabel("cosine with the exact solution")
      axes[1, col].set_ylabel("relative error to the exact solution")
      axes[2, col].set_ylabel("relative error to its own system's solution")
      axes[1, col].set_yscale("log")
      axes[2, col].set_yscale("log")
      for ax in axes[:, col]:
        ax.set_xlabel("CG steps")
        ax.grid(alpha=0.3)
      col += 1
  axes[0, 0].legend()
  fig.suptitle(f"Implicit meta-gradient vs the dense solve of (I + H/lam) v = g"
               f" (Conv4, {a.filters} filters, {size} parameters, Omniglot "
               f"5-way 1-shot, {a.tasks} tasks, {datetime.date.today()})",
               fontsize=10)
  fig.tight_layout()
  fig.savefig(a.out, dpi=110)
  print(f"wrote {a.out}")


if __name__ == "__main__":
  main()
