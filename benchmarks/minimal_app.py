"""The start-up floor beside `train.py trainer.steps=1`: the least a Hydra app training a Flax NNX
model pays, with none of the zoo. It composes an empty config and writes Hydra's run directory,
builds the seed's model, runs one jitted Adam step on a fixed batch and prints the loss; like
zoo-train, it ends without the interpreter's teardown. No validation, data set or report; with
`+checkpoint=true`, it also saves the trained state with orbax, as every zoo run does at its end.
`benchmarks/bench.py` times it beside the zoo's run and the bare imports."""

import logging
import os
import sys

import hydra
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from omegaconf import DictConfig


class Linear(nnx.Module):
    def __init__(self, n_in: int, n_out: int, rngs: nnx.Rngs):
        scale = 1.0 / jnp.sqrt(n_in)
        self.kernel = nnx.Param(jax.random.normal(rngs.params(), (n_in, n_out)) * scale)
        self.bias = nnx.Param(jnp.zeros((n_out,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(x @ self.kernel + self.bias)


@hydra.main(config_path=None, config_name=None, version_base="1.3")
def main(cfg: DictConfig) -> None:
    graphdef, params = nnx.split(Linear(4, 8, nnx.Rngs(0)))
    tx = optax.adam(1e-3)

    @jax.jit
    def step(params, opt_state, x, y):
        def loss(p):
            return jnp.mean((nnx.merge(graphdef, p)(x) - y) ** 2)

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    x, y = jnp.ones((32, 4)), jnp.zeros((32, 8))
    params, opt_state, loss = step(params, tx.init(params), x, y)
    print(float(loss))
    if cfg.get("checkpoint"):
        import orbax.checkpoint as ocp
        from hydra.core.hydra_config import HydraConfig

        logging.getLogger("absl").setLevel(logging.WARNING)  # as the zoo: not every save's steps

        directory = os.path.join(HydraConfig.get().runtime.output_dir, "checkpoints")
        with ocp.CheckpointManager(directory) as manager:
            manager.save(1, args=ocp.args.StandardSave({"params": params, "opt": opt_state}))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)
