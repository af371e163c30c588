"""CLI commands of synthesis: demo-data, synth, inspect (owned by the synthesis work)."""

import click


@click.command("demo-data")
def demo_data_cmd():
    """Generate a small labelled demo dataset (not yet implemented)."""
    raise click.ClickException("not implemented yet")


@click.command("synth")
def synth_cmd():
    """Build the SIRST-5K store (not yet implemented)."""
    raise click.ClickException("not implemented yet")


@click.command("inspect")
def inspect_cmd():
    """Summarise and verify a store (not yet implemented)."""
    raise click.ClickException("not implemented yet")
