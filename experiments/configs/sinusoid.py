"""Sinusoid regression (Finn et al. 2017, Sec. 5.1): the demonstration task family."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Measured on the 2-core CPU, 5,000 meta-steps (README, "Sinusoid demo"):
  # iMAML-HF with the Gauss-Newton system trains best here; the paper-exact
  # system and iMAML-GD with a fixed 10-step inner loop train poorly.
  c.algorithm = "imaml_hf"       # imaml_gd | imaml_hf | maml | fomaml | reptile
  c.seed = 0
  c.meta_steps = 5000
  c.meta_batch = 16
  c.meta_lr = 1e-3               # Adam
  c.support_size = 10            # K-shot regression, K = 10
  c.query_size = 10
  c.hidden = (40, 40)
  c.inner_steps = 10             # GD steps (iMAML-GD, MAML, FOMAML, Reptile)
  c.inner_lr = 0.01
  c.newton_steps = 5             # iMAML-HF
  c.lam = 0.5                    # iMAML proximal strength
  c.cg_steps = 5
  c.system = "gauss_newton"      # exact | damped | gauss_newton
  c.cg_method = "jax"            # jax | truncated
  c.newton_curvature = "hessian"  # iMAML-HF's Newton steps: hessian | gauss_newton
  c.newton_cg_steps = 5          # CG steps per Newton system
  c.inner_loop = "proximal"      # iMAML-GD: proximal | pull_back
  c.test_inner_steps = 0         # 0: adapt at test as in training
  c.task_chunk = 0               # 0: vmap over the whole task batch
  c.eval_tasks = 600
  c.log_every = 250
  return c
