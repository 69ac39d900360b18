"""One machine or many: the distribution strategy, the workers of a
multi-worker run, and what Keras needs there."""

import os

import keras

from keras_igc import keras_internals


def distribution_strategy():
    """The tf.distribute strategy for this machine: several machines when
    `TF_CONFIG` describes a cluster, several GPUs, or the default one."""
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def check_distribution(run, strategy, seed):
    if run.given is not None and strategy.num_replicas_in_sync > 1:
        raise ValueError(
            f"A keras.Model built outside the strategy's scope cannot train on "
            f"{strategy.num_replicas_in_sync} replicas. Pass a registered name "
            f"(keras_igc.applications), or train with model.fit under "
            f"strategy.scope()."
        )
    if seed is None and _workers(strategy) > 1:
        raise ValueError(
            "A multi-worker run needs a seed: every worker must read the same "
            "shuffled stream to take its share of each batch. Pass --seed N "
            "(seed=N), the same on every worker."
        )


def _workers(strategy):
    """How many machines train (1 without a cluster)."""
    resolver = _cluster_resolver(strategy)
    if resolver is None:
        return 1
    return sum(len(tasks) for tasks in resolver.cluster_spec().as_dict().values())


def multi_worker_workarounds(network, train_data):
    """Lets Keras 3's `fit` run under MultiWorkerMirroredStrategy, which it
    does not support (keras-team/keras#20585). Two steps fail there:

    - `fit` reduces a peeked input batch across workers only to learn its
      shape; the model, metrics and optimizer are built here from the
      dataset's element spec instead, and that step is skipped;
    - the logs of each step (scalars) are mean-reduced across workers along
      axis 0; the steps here return them with a batch axis of 1, which that
      reduction removes again.
    """
    keras_internals.build_for_data(network, train_data.element_spec)
    for name in ("train_step", "test_step"):
        step = getattr(network, name)

        def with_batch_axis(data, step=step):
            return keras.tree.map_structure(
                lambda value: keras.ops.reshape(value, (1,)), step(data)
            )

        setattr(network, name, with_batch_axis)


def _cluster_resolver(strategy):
    """The strategy's cluster, or None on a single machine."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None
    return resolver


def worker_name(strategy):
    """None for the chief (or a single machine), else `"workers/worker-N"`."""
    resolver = _cluster_resolver(strategy)
    if resolver is None:
        return None
    cluster = resolver.cluster_spec().as_dict()
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in cluster
    ):
        return None
    return os.path.join("workers", f"{task_type}-{task_id}")
