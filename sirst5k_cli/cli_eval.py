"""CLI commands `eval` and `predict` (owned by the evaluation work)."""

import click


@click.command("eval")
def eval_cmd():
    """Evaluate a checkpoint or method (not yet implemented)."""
    raise click.ClickException("not implemented yet")


@click.command("predict")
def predict_cmd():
    """Predict masks for images (not yet implemented)."""
    raise click.ClickException("not implemented yet")
