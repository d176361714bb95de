"""The network side: the model factory, losses, optimizers and schedulers, inference with TTA, metrics."""
