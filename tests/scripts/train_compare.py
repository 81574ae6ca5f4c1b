"""Train the example tabular task under a given strategy and print its losses and weights' digest as JSON.

Run in a fresh process: logical CPU devices must be configured before TensorFlow starts.
"""

import json
import sys

import numpy as np

from suite.trainer import TrainOptions, train


def main(strategy: str, devices: int, batch: int, home: str) -> None:
    import os

    os.environ["SUITE_HOME"] = home
    overrides = {"epochs": 3, "batch_size": batch, "dropout": 0.0, "lr_schedule": "constant",
                 "learning_rate": 0.01, "weight_decay": 0.0}
    run = train("tabular_classification", "sample", overrides, name=f"{strategy}-{devices}",
                options=TrainOptions(strategy=strategy, devices=devices, seed=3, tensorboard=False,
                                       deterministic=True))
    model = run.load_model()
    weights = np.concatenate([np.ravel(w) for w in model.get_weights()])
    losses = [e["metrics"]["loss"] for e in run.history()]
    print(json.dumps({"status": run.status, "replicas": run.info["replicas"], "losses": losses,
                      "weights": weights.tolist(), "strategy": run.info["strategy"]["kind"]}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
