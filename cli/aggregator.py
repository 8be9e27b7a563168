"""Aggregator command: ``aggregate`` adds encrypted bundles; it never holds a private key."""

from __future__ import annotations

from pathlib import Path

import click

from .options import force_option
from .output import output_options


@click.command()
@output_options
@click.argument("bundles", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Aggregate bundle to write.")
@click.option("--roster", "roster_path", type=click.Path(path_type=Path), default=None,
              help="Consortium roster: accept only its members' signed contributions (masked rounds).")
@click.option("--round", "round_path", type=click.Path(path_type=Path), default=None,
              help="The current round: contributions must be signed for it, and all its participants present.")
@click.option("--study", "study_path", type=click.Path(path_type=Path), default=None,
              help="The consortium's study: refuse anything not made for it.")
@force_option
def aggregate(bundles: tuple[Path, ...], out: Path, roster_path: Path | None, round_path: Path | None,
              study_path: Path | None, force: bool) -> None:
    """Aggregator: add encrypted bundles, without any private key.

    Bundles are read one at a time; kinds, keys, encodings and features must match.
    """
    import hefed
    from hefed._files import check_writable
    from hefed.protocol import Study, load_round_inputs

    from .render import render_aggregate

    check_writable(out, force)
    roster, round_ = load_round_inputs(roster_path, round_path)
    result = hefed.aggregate(bundles, roster, round_, Study.load(study_path) if study_path is not None else None)
    result.save(out, force=force)
    render_aggregate(result, out)
