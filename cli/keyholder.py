"""Key holder commands: ``keygen`` (the consortium's Paillier key pair) and ``decrypt`` (aggregates only)."""

from __future__ import annotations

from pathlib import Path

import click

from .options import LibraryDefault, force_option
from .output import output_options


@click.command()
@output_options
@click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for public_key.json and private_key.json (created if missing).")
@click.option("--bits", cls=LibraryDefault, library_default="hefed._keys:DEFAULT_BITS", show_default=True, type=int,
              help="Size of the modulus n in bits: 2048 or more for real data (the default, 3072, is NIST's "
              "128-bit level).")
@click.option("--insecure-test-key", is_flag=True, help="Allow keys below 2048 bits, for tests only.")
@force_option
def keygen(out_dir: Path, bits: int, insecure_test_key: bool, force: bool) -> None:
    """Key holder: make the consortium's Paillier key pair and the key holder's release key.

    The Paillier keys are in pheutil's JSON format. Publish public_key.json to the factories; private_key.json is
    written with mode 0600 and never printed. keyholder.key.json (mode 0600) signs what the key holder releases
    (decrypted sums, models); name keyholder.pub.json in the study (hefed study new --key-holder) so every reader
    checks it.
    """
    import hefed
    from hefed._files import check_writable
    from hefed.protocol import make_release_key

    from .render import render_keypair

    public_path, private_path = out_dir / "public_key.json", out_dir / "private_key.json"
    public_key, private_key = hefed.generate_keypair(bits, insecure_test_key=insecure_test_key)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in (public_path, private_path, out_dir / "keyholder.key.json", out_dir / "keyholder.pub.json"):
        check_writable(path, force)
    hefed.save_private_key(private_key, private_path, force=force)
    hefed.save_public_key(public_key, public_path, force=force)
    release_private, release_public = make_release_key(out_dir, force=force)
    render_keypair(public_key, public_path, private_path, hefed.key_fingerprint(public_key),
                   release_private, release_public)


@click.command()
@output_options
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--private-key", "private_key_path", required=True, type=click.Path(path_type=Path),
              help="The consortium's private key (hefed keygen; mode 0600).")
@click.option("--min-contributors", cls=LibraryDefault, library_default="hefed.roles:DEFAULT_MIN_CONTRIBUTORS",
              show_default=True, type=int, help="Refuse aggregates of fewer factories (disclosure threshold).")
@click.option("--allow-insecure-permissions", is_flag=True, help="Load a private key readable by others.")
@click.option("--roster", "roster_path", type=click.Path(path_type=Path), default=None,
              help="Consortium roster to check a masked round aggregate's signed manifests against.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Plain sums to write (statistics, summary, evaluation metrics …, by the bundle's kind).")
@click.option("--study", "study_path", type=click.Path(path_type=Path), default=None,
              help="The consortium's study: refuse anything not made for it; its threshold applies too.")
@click.option("--allow-unsigned", is_flag=True,
              help="Decrypt an unsigned (plain) aggregate, for trials: its contributor list is then the "
              "aggregator's word, and one factory's bundle padded or scaled by the aggregator would decrypt.")
@click.option("--ledger", "ledger_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The key holder's ledger of contributor sets it decrypted (one file for all its keys); an "
              "aggregate whose set overlaps one of them without being the same is refused (differencing). "
              "Default with --study or --roster: decryption-ledger.json beside the private key.")
@click.option("--release-key", "release_key_path", type=click.Path(path_type=Path), default=None,
              help="Sign the decrypted sums with the key holder's release key (keyholder.key.json). Needed when "
              "the study names one. Default with --study: keyholder.key.json beside the private key, if present.")
@force_option
def decrypt(bundle: Path, private_key_path: Path, min_contributors: int, allow_insecure_permissions: bool,
            roster_path: Path | None, study_path: Path | None, allow_unsigned: bool, ledger_path: Path | None,
            release_key_path: Path | None, out: Path, force: bool) -> None:
    """Key holder: decrypt an aggregate of enough factories.

    Writes the plain sums of the bundle's kind (statistics, summary, evaluation sums …), signed with the release
    key. Refused below --min-contributors factories, for a masked round unless every signed manifest checks and
    the aggregate is their product, for an unsigned aggregate unless --allow-unsigned, and when the ledger finds
    its contributor set overlapping one already decrypted.
    """
    from hefed.roles import decrypt_to_file

    from .render import render_ledger, render_sums

    decrypted = decrypt_to_file(
        bundle, private_key_path, out, min_contributors=min_contributors, roster=roster_path, study=study_path,
        allow_unsigned=allow_unsigned, ledger=ledger_path, release_key=release_key_path,
        allow_insecure_permissions=allow_insecure_permissions, force=force)
    render_ledger(decrypted.ledger, decrypted.signed)
    render_sums(decrypted.result, out)
