"""maskfold core: config, data contract, datasets, models, losses, training loop and CLI."""
