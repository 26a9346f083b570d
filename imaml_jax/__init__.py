"""imaml-jax: optimization-based meta-learning with implicit gradients, in JAX.

The public API is what this module re-exports; see the README for a map.
"""

from imaml_jax.data.episodes import ImageSet
from imaml_jax.data.episodes import sample_episodes
from imaml_jax.data.episodes import with_rotations
from imaml_jax.data.sinusoid import sample_sinusoid_tasks
from imaml_jax.distributed import device_share
from imaml_jax.distributed import make_sharded_meta_step
from imaml_jax.distributed import replicate
from imaml_jax.distributed import task_mesh
from imaml_jax.evaluate import adapt_and_evaluate
from imaml_jax.evaluate import mean_ci95
from imaml_jax.implicit import damped_system
from imaml_jax.implicit import exact_system
from imaml_jax.implicit import gauss_newton_system
from imaml_jax.implicit import hvp
from imaml_jax.implicit import implicit_adapt
from imaml_jax.implicit import ImplicitAdapt
from imaml_jax.implicit import ImplicitInfo
from imaml_jax.learners import finetune
from imaml_jax.learners import fomaml
from imaml_jax.learners import imaml
from imaml_jax.learners import Learner
from imaml_jax.learners import maml
from imaml_jax.learners import reptile
from imaml_jax.losses import cross_entropy_loss
from imaml_jax.losses import gauss_newton_product
from imaml_jax.losses import mse_loss
from imaml_jax.losses import SupervisedLoss
from imaml_jax.models import apply_fn
from imaml_jax.models import Conv4
from imaml_jax.models import init_params
from imaml_jax.models import mini_imagenet_conv4
from imaml_jax.models import MLP
from imaml_jax.models import omniglot_conv4
from imaml_jax.models import xavier_uniform_init
from imaml_jax.proximal import proximal_loss
from imaml_jax.proximal import TaskObjective
from imaml_jax.solvers import CGInfo
from imaml_jax.solvers import gradient_descent
from imaml_jax.solvers import newton_cg
from imaml_jax.solvers import pull_back_gradient_descent
from imaml_jax.solvers import solve_cg
from imaml_jax.solvers import SolverInfo
from imaml_jax.solvers import truncated_cg
from imaml_jax.stability import drawdown
from imaml_jax.stability import Drawdown
from imaml_jax.stability import stability_flags
from imaml_jax.stability import StabilityThresholds
from imaml_jax.tasks import Batch
from imaml_jax.tasks import Task
from imaml_jax.tasks import minibatches
from imaml_jax.train import Hook
from imaml_jax.train import init_train_state
from imaml_jax.train import make_meta_step
from imaml_jax.train import run
from imaml_jax.train import TrainState

__version__ = "0.1.0"
