"""Consortium commands for masked rounds: ``roster`` (who may contribute, with their public keys) and
``round`` (new, join, start, collect, reveal, unmask: a round that survives drop-outs)."""

from __future__ import annotations

from pathlib import Path

import click

from .options import force_option, insecure_test_key_option, split_names
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
    """Consortium: masked rounds that survive drop-outs (secure aggregation).

    \b
    The sequence (one file per message):
      aggregator  hefed round new      → round.json            (to every participant)
      factory     hefed round join     → join-ID.json          (to the aggregator)
      aggregator  hefed round start    → round-keys.json       (to every factory)
      factory     hefed encrypt --round round-keys.json → bundle (to the aggregator)
      aggregator  hefed round collect  → collected.json, unmask-request.json (to the survivors)
      factory     hefed round reveal   → reveal-ID.json        (to the aggregator)
      aggregator  hefed round unmask   → aggregate.json        (to the key holder: hefed decrypt --roster)
    Any threshold t of the joined factories can unmask the sum of those who delivered; no one
    re-encrypts when some drop out, and a drop-out's late bundle stays masked.
    """


def _say_wrote(path: Path, text: str, **data: object) -> None:
    from .output import emit, say

    say(f"wrote {path}: {text}")
    emit(out=path, **data)


@round_group.command("new")
@output_options
@click.option("--roster", "roster_path", required=True, type=click.Path(path_type=Path),
              help="The consortium roster (hefed roster add).")
@click.option("--participants", required=True, help="Comma-separated factory ids taking part (from the roster).")
@click.option("--threshold", default=None, type=int,
              help="How many joined factories must deliver and reveal (default and minimum: more than half, and "
              "the study's min-contributors).")
@click.option("--study", "study_path", default=None, type=click.Path(path_type=Path),
              help="The study the round serves: its roster and threshold apply.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Round file to write and distribute.")
@force_option
def round_new(roster_path: Path, participants: str, threshold: int | None, study_path: Path | None, out: Path,
              force: bool) -> None:
    """Aggregator: propose a round (fresh random id, participants, threshold)."""
    from hefed._files import check_writable
    from hefed.protocol import Roster, Study, propose_round

    check_writable(out, force)
    result = propose_round(Roster.load(roster_path), split_names(participants) or [], threshold=threshold,
                           study=Study.load(study_path) if study_path is not None else None)
    result.save(out, force=force)
    _say_wrote(out, f"round {result.round_id} of {len(result.participants)} participants "
               f"({', '.join(result.participants)}), threshold {result.threshold}; send it to every participant",
               round_id=result.round_id, participants=list(result.participants), threshold=result.threshold,
               study=result.study)


@round_group.command("join")
@output_options
@click.option("--round", "round_path", required=True, type=click.Path(path_type=Path),
              help="The round file (hefed round new).")
@click.option("--identity", "identity_path", required=True, type=click.Path(path_type=Path),
              help="This factory's enrollment folder (hefed enroll); the round's secret is kept there (0600).")
@click.option("--roster", "roster_path", required=True, type=click.Path(path_type=Path),
              help="The consortium roster this factory pinned.")
@click.option("--study", "study_path", default=None, type=click.Path(path_type=Path),
              help="The study, when the round serves one.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Join message to send the aggregator.")
@force_option
def round_join(round_path: Path, identity_path: Path, roster_path: Path, study_path: Path | None, out: Path,
               force: bool) -> None:
    """Factory: join a round (fresh mask key and self-mask seed, shared t-of-n with the other participants)."""
    from hefed._files import check_writable
    from hefed.protocol import Roster, Round, Study, join_round, load_identity

    check_writable(out, force)
    join, _ = join_round(load_identity(identity_path), Roster.load(roster_path), Round.load(round_path),
                         study=Study.load(study_path) if study_path is not None else None)
    join.save(out, force=force)
    _say_wrote(out, f"{join.factory_id}'s signed join to round {join.round_id}; send it to the aggregator",
               round_id=join.round_id, factory_id=join.factory_id)


@round_group.command("start")
@output_options
@click.argument("joins", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--round", "round_path", required=True, type=click.Path(path_type=Path), help="The round file.")
@click.option("--roster", "roster_path", required=True, type=click.Path(path_type=Path), help="The roster.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Round keys to write and send to every joined factory.")
@force_option
def round_start(joins: tuple[Path, ...], round_path: Path, roster_path: Path, out: Path, force: bool) -> None:
    """Aggregator: the round keys from the factories' signed joins (at least the threshold)."""
    from hefed._files import check_writable
    from hefed.protocol import Join, Roster, Round, start_round

    check_writable(out, force)
    keys = start_round(Round.load(round_path), Roster.load(roster_path), [Join.load(j) for j in joins])
    keys.save(out, force=force)
    _say_wrote(out, f"round keys of {keys.round_id}: {len(keys.joined)} joined ({', '.join(keys.joined)}); "
               "send them to every joined factory (hefed encrypt --round)", round_id=keys.round_id,
               joined=list(keys.joined), digest=keys.digest())


@round_group.command("collect")
@output_options
@click.argument("bundles", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--round-keys", "keys_path", required=True, type=click.Path(path_type=Path),
              help="The round keys (hefed round start).")
@click.option("--roster", "roster_path", required=True, type=click.Path(path_type=Path), help="The roster.")
@click.option("--study", "study_path", default=None, type=click.Path(path_type=Path),
              help="The study: its threshold and checks apply.")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="The collected product of the survivors' contributions (kept by the aggregator).")
@click.option("--request", "request_path", required=True, type=click.Path(path_type=Path),
              help="The unmask request to send to every survivor.")
@force_option
def round_collect(bundles: tuple[Path, ...], keys_path: Path, roster_path: Path, study_path: Path | None, out: Path,
                  request_path: Path, force: bool) -> None:
    """Aggregator: check and multiply the contributions that arrived; ask their senders to reveal."""
    from hefed._files import check_writable
    from hefed.protocol import Roster, RoundKeys, Study
    from hefed.roles import collect_round

    check_writable(out, force)
    check_writable(request_path, force)
    collected, request = collect_round(bundles, Roster.load(roster_path), RoundKeys.load(keys_path),
                                       Study.load(study_path) if study_path is not None else None)
    request.save(request_path, force=force)
    collected.save(out, force=force)
    dropped = f"; dropped out: {', '.join(request.dropouts)}" if request.dropouts else ""
    _say_wrote(out, f"{len(request.survivors)} contributions ({', '.join(request.survivors)}){dropped}; send "
               f"{request_path} to the survivors", request=request_path, survivors=list(request.survivors),
               dropouts=list(request.dropouts))


@round_group.command("reveal")
@output_options
@click.option("--request", "request_path", required=True, type=click.Path(path_type=Path),
              help="The aggregator's unmask request (hefed round collect).")
@click.option("--identity", "identity_path", required=True, type=click.Path(path_type=Path),
              help="This factory's enrollment folder (holds the round's secret and ledger).")
@click.option("--roster", "roster_path", required=True, type=click.Path(path_type=Path), help="The roster.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Signed reveal to send the aggregator.")
@force_option
def round_reveal(request_path: Path, identity_path: Path, roster_path: Path, out: Path, force: bool) -> None:
    """Factory: reveal, per joined factory, the share of its seed (survivor) or of its mask key (drop-out)."""
    from hefed._files import check_writable
    from hefed.protocol import Roster, UnmaskRequest, load_identity, reveal

    check_writable(out, force)
    answer = reveal(UnmaskRequest.load(request_path), load_identity(identity_path), Roster.load(roster_path))
    answer.save(out, force=force)
    _say_wrote(out, f"{answer.factory_id}'s signed reveal for round {answer.round_id} (survivors "
               f"{', '.join(answer.survivors)}); send it to the aggregator", round_id=answer.round_id,
               factory_id=answer.factory_id, survivors=list(answer.survivors))


@round_group.command("unmask")
@output_options
@click.argument("reveals", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--collected", "collected_path", required=True, type=click.Path(path_type=Path),
              help="The collected product (hefed round collect --out).")
@click.option("--round-keys", "keys_path", required=True, type=click.Path(path_type=Path), help="The round keys.")
@click.option("--roster", "roster_path", required=True, type=click.Path(path_type=Path), help="The roster.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Aggregate to send the key holder.")
@force_option
def round_unmask(reveals: tuple[Path, ...], collected_path: Path, keys_path: Path, roster_path: Path, out: Path,
                 force: bool) -> None:
    """Aggregator: the survivors' aggregate from the collected product and at least t signed reveals."""
    from hefed._files import check_writable
    from hefed.protocol import Roster, RoundKeys
    from hefed.roles import unmask_round

    check_writable(out, force)
    result = unmask_round(collected_path, RoundKeys.load(keys_path), reveals, Roster.load(roster_path))
    result.save(out, force=force)
    _say_wrote(out, f"{result.kind} aggregate of round {result.round_id} over {', '.join(result.contributors)}; "
               "the key holder decrypts it with --roster", round_id=result.round_id,
               contributors=list(result.contributors), kind=result.kind)


@click.group()
def study() -> None:
    """Consortium: the agreement every party pins (key, columns, encoding, kinds, policies).

    Write it once, compare its digest with every party out of band, then give it to every command
    with --study: each refuses what the study does not allow.
    """


def _pairs(text: str | None, option: str) -> dict[str, str]:
    """'a=x, b=y' → {'a': 'x', 'b': 'y'}."""
    from hefed.errors import UsageError

    out: dict[str, str] = {}
    for item in split_names(text) or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f"{option}: expected NAME=VALUE items separated by commas, got {item!r}")
        out[name.strip()] = value.strip()
    return out


@study.command("new")
@output_options
@click.option("--public-key", "public_key_path", required=True, type=click.Path(path_type=Path),
              help="The consortium's public key (hefed keygen); the study carries it and its fingerprint.")
@click.option("--target", required=True, help="Response column, e.g. co2_t.")
@click.option("--features", required=True, help="Comma-separated feature columns, as the factories' tables name them.")
@click.option("--units", default=None, help="Units of columns, e.g. 'co2_t=t,coal_t=t,electricity_mwh=MWh'.")
@click.option("--categories", default=None,
              help="Categorical features and their levels, e.g. 'kiln=dry|wet|semi': one-hot encoded at every "
              "factory with exactly these levels (the first is the reference).")
@click.option("--roster", "roster_path", default=None, type=click.Path(path_type=Path),
              help="The consortium roster: masked rounds must use this one.")
@click.option("--min-contributors", default=3, show_default=True, type=int,
              help="The disclosure threshold: no aggregate of fewer factories is decrypted.")
@click.option("--kinds", default="summary,statistics,evaluation", show_default=True,
              help="The bundle kinds factories may be asked for (summary, statistics, fold_statistics, "
              "coefficients, evaluation).")
@click.option("--folds", default=5, show_default=True, type=int, help="fold_statistics: the number of folds.")
@click.option("--fold-seed", default=0, show_default=True, type=int, help="fold_statistics: the seed of the folds.")
@click.option("--ridge", default=0.0, show_default=True, type=float,
              help="coefficients: the ridge penalty of each factory's own fit.")
@click.option("--missing", type=click.Choice(["drop", "error"]), default="drop", show_default=True,
              help="Rows with missing values: dropped (and counted) or refused.")
@click.option("--impute", type=click.Choice(["mean"]), default=None,
              help="Fill gaps with the consortium means (the decrypted summary, given when encrypting).")
@click.option("--max-z", type=float, default=None, help="Drop rows with |z| above this against the summary.")
@click.option("--test-fraction", default=0.0, show_default=True, type=float,
              help="Fraction of each factory's rows held out of the statistics (for evaluation).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the holdout draw.")
@click.option("--bounds", "bounds_path", default=None, type=click.Path(path_type=Path),
              help="Declared per-column bounds every factory clips to (for a differentially private release).")
@click.option("--frac-bits", default=None, type=int,
              help="Encoding: the default grid 2^-FRAC_BITS (default 84; finer values are rounded and counted).")
@click.option("--int-bits", default=None, type=int,
              help="Encoding: the default range |x| < 2^INT_BITS (default 64).")
@click.option("--max-contributors", default=None, type=int,
              help="Encoding: most factories an aggregate may sum (default 10000).")
@click.option("--column-encoding", default=None,
              help="Per-column grids and ranges, e.g. 'energy_wh=0:48,ppm=20:16' (FRAC_BITS:INT_BITS), for data "
              "the defaults do not fit (hefed check says what each column needs).")
@click.option("--key-holder", "keyholder_path", type=click.Path(path_type=Path), default=None,
              help="The key holder's public release key (keyholder.pub.json, from hefed keygen): decrypted sums "
              "and models are then accepted only when it signed them for this study.")
@click.option("--cov-type", default="HC1", show_default=True,
              type=click.Choice(["HC0", "HC1", "HC2", "HC3", "cluster", "HAC"], case_sensitive=False),
              help="residual_moments: the robust covariance the second round is for (cluster: by plant; HAC: "
              "Newey–West within each plant's row order; HC2/HC3 send the pooled (XᵀX)⁻¹ to the factories).")
@click.option("--maxlags", default=None, type=int, help="residual_moments with --cov-type HAC: the lags.")
@click.option("--family", default=None, type=click.Choice(["binomial", "poisson", "gamma"]),
              help="glm_round: the GLM family (binomial/logit, poisson/log, gamma/log); default binomial.")
@click.option("--offset", default=None, help="glm_round: a column added to the linear predictor (as statsmodels').")
@click.option("--exposure", default=None, help="glm_round: a column whose log is added to the linear predictor.")
@click.option("--weights", default=None, metavar="COLUMN",
              help="weighted_statistics: the column of precision weights every factory weights its rows by (WLS).")
@click.option("--title", default="", help="A name for people to recognise the study by.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Study file to write and distribute.")
@insecure_test_key_option
@force_option
def study_new(public_key_path: Path, target: str, features: str, units: str | None, categories: str | None,
              roster_path: Path | None, min_contributors: int, kinds: str, folds: int, fold_seed: int, ridge: float,
              missing: str, impute: str | None, max_z: float | None, test_fraction: float, seed: int,
              bounds_path: Path | None, frac_bits: int | None, int_bits: int | None, max_contributors: int | None,
              column_encoding: str | None, keyholder_path: Path | None, cov_type: str, maxlags: int | None,
              family: str | None, offset: str | None, exposure: str | None, title: str, out: Path,
              insecure_test_key: bool, force: bool, weights: str | None = None) -> None:
    """Write a new study (fresh random id) and print its digest for every party to compare."""
    import hefed
    from hefed._files import check_writable
    from hefed.data import Bounds, Cleaning, Holdout
    from hefed.errors import UsageError
    from hefed.kinds import get_kind, kind_names
    from hefed.protocol import ColumnSpec, Roster, Study, load_release_public
    from hefed.stats import ColumnEncoding, Encoding, canonical_cov_type

    from .render import render_study

    check_writable(out, force)
    unit_of, levels_of = _pairs(units, "--units"), _pairs(categories, "--categories")
    names = split_names(features) or []
    unknown = sorted((set(unit_of) | set(levels_of)) - {target, *names})
    if unknown:
        raise UsageError(f"--units/--categories name columns that are not the target or a feature: {unknown}")
    specs = [ColumnSpec(name, unit_of.get(name), tuple(levels_of[name].split("|")) if name in levels_of else None)
             for name in names]
    encodings = {}
    for name, spec in _pairs(column_encoding, "--column-encoding").items():
        frac, sep, integer = spec.partition(":")
        try:
            encodings[name] = ColumnEncoding(int(frac), int(integer))
        except ValueError:
            raise UsageError(f"--column-encoding {name}={spec}: expected FRAC_BITS:INT_BITS") from None
    base = Encoding()
    encoding = Encoding(frac_bits=base.frac_bits if frac_bits is None else frac_bits,
                        int_bits=base.int_bits if int_bits is None else int_bits,
                        max_contributors=base.max_contributors if max_contributors is None else max_contributors)
    # each kind takes the ones its request has
    options = {"folds": folds, "seed": fold_seed, "ridge": ridge, "cov_type": canonical_cov_type(cov_type),
               **{name: value for name, value in (("maxlags", maxlags), ("weights", weights), ("family", family),
                                                  ("offset", offset), ("exposure", exposure)) if value is not None}}
    unknown_kinds = [kind for kind in split_names(kinds) or [] if kind not in kind_names()]
    if unknown_kinds:
        raise UsageError(f"--kinds: {unknown_kinds[0]!r} is not a bundle kind; choose from {', '.join(kind_names())}")
    if "weighted_statistics" in (split_names(kinds) or []) and weights is None:
        raise UsageError("--kinds weighted_statistics needs --weights COLUMN: the column every factory weights by")
    kind_parameters = {kind: get_kind(kind).agreed_parameters(options) for kind in split_names(kinds) or []}
    result = Study.new(
        hefed.load_public_key(public_key_path, insecure_test_key=insecure_test_key),
        ColumnSpec(target, unit_of.get(target)), specs,
        encoding=encoding, column_encodings=encodings, min_contributors=min_contributors,
        roster_digest=Roster.load(roster_path).digest() if roster_path is not None else None,
        kinds=kind_parameters, cleaning=Cleaning(missing=missing, impute=impute, max_z=max_z),  # type: ignore[arg-type]
        holdout=Holdout(test_fraction, seed) if test_fraction else None,
        bounds=Bounds.load(bounds_path) if bounds_path is not None else None, title=title,
        keyholder=load_release_public(keyholder_path) if keyholder_path is not None else None,
    )
    result.save(out, force=force)
    render_study(result, out, wrote=True)


@study.command("show")
@output_options
@click.argument("study_path", type=click.Path(path_type=Path))
def study_show(study_path: Path) -> None:
    """Print a study and its digest, to compare with every party out of band."""
    from hefed.protocol import Study

    from .render import render_study

    render_study(Study.load(study_path), study_path, wrote=False)
