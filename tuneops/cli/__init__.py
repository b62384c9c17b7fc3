"""The `tuneops` command line, built with Typer: one module per command (predict.py for `tuneops predict`, serve.py,
run.py, schedule.py, deploy.py, up.py, status.py, demo.py, prepare_data.py, sweep.py), each holding the command's
options beside the function that uses them, its help text and, where it has one, its logic; main.py builds the app
from them and holds the global `--params` option; options.py holds what several commands share. The CLI may import
anything in the tuneops library, but never flows/ (it loads the retrain flow by its entrypoint in the checkout)."""
