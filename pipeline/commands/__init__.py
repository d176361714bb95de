"""Parts of the `maskfold` command (pipeline/cli.py): how a command reads its config and reports a failure, and
the commands that use no stage. Nothing here imports a stage; only pipeline/cli.py does, lazily."""
