"""Consortium commands for masked rounds: ``roster`` (who may contribute, with their public keys) and
``round`` (a fixed participant list, before anyone encrypts)."""

from __future__ import annotations

from pathlib import Path

import click

from .options import force_option, split_names
from .output import output_options


@click.group()
def roster() -> None:
    """Consortium: who may contribute, with their public keys."""


@roster.command("add")
@output_options
@click.argument("roster_path", type=click.Path(path_type=Path))
@click.argument("identities", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--replace", is_flag=True, help="Replace the keys of a factory already in the roster.")
def roster_add(roster_path: Path, identities: tuple[Path, ...], replace: bool) -> None:
    """Add factories' identity.pub.json files to the roster.

    ROSTER_PATH is created if missing; a factory already in it keeps its keys unless --replace.
    """
    from hefed.protocol import roster_add as add_members

    from .render import render_roster

    render_roster(add_members(roster_path, list(identities), replace), roster_path, listing=False)


@roster.command("list")
@output_options
@click.argument("roster_path", type=click.Path(path_type=Path))
def roster_list(roster_path: Path) -> None:
    """List a roster's members and their signing keys.

    Compare the keys with each factory out of band before a round.
    """
    from hefed.protocol import Roster

    from .render import render_roster

    render_roster(Roster.load(roster_path), roster_path, listing=True)


@click.group(name="round")
def round_group() -> None:
    """Consortium: start a masked round with fixed participants.

    The participants are fixed before anyone encrypts; only the sum over all of them can be decrypted.
    """


@round_group.command("new")
@output_options
@click.option("--roster", "roster_path", required=True, type=click.Path(path_type=Path),
              help="The consortium roster (hefed roster add).")
@click.option("--participants", required=True, help="Comma-separated factory ids taking part (from the roster).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Round file to write and distribute.")
@force_option
def round_new(roster_path: Path, participants: str, out: Path, force: bool) -> None:
    """Start a round with a fixed participant list and a fresh random id."""
    from hefed._files import check_writable
    from hefed.protocol import Roster, new_round

    from .render import render_round

    check_writable(out, force)
    result = new_round(Roster.load(roster_path), split_names(participants) or [])
    result.save(out, force=force)
    render_round(result, out)
