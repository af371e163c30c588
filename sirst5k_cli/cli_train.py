"""CLI command `train` (owned by the trainer work)."""

import click


@click.command("train")
def train_cmd():
    """Train the AFF U-Net on a store (not yet implemented)."""
    raise click.ClickException("not implemented yet")
