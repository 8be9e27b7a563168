"""``hefed federate``: a one-machine trial of the Flower deployment.

A thin command over :func:`hefed.flower.run_local_federation`: it starts a
Flower SuperLink and one SuperNode per data file on 127.0.0.1, runs the hefed
Flower app once, stops every process it started and leaves the aggregate
bundle. With ``--roster`` and one ``--identity`` per data file it runs masked,
signed rounds and says which rounds it needed and who dropped out. Library
errors (:class:`hefed.errors.HefedError`) propagate to the main group, which
prints them as one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from hefed._files import check_writable
from hefed.errors import UsageError


def _flag_to_meta(key: str):  # noqa: ANN202 - click callback factory
    def callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            ctx.meta[key] = True

    return callback


def _split(text: str | None) -> list[str] | None:
    return [f.strip() for f in text.split(",") if f.strip()] if text else None


@click.command()
@click.option("--data", "data_paths", multiple=True, type=click.Path(path_type=Path),
              help="One table per factory (CSV or Parquet; repeat, or list several after one --data). "
              "Each gets its own SuperNode; factory ids are the file names without suffix.")
@click.argument("more_data", nargs=-1, type=click.Path(path_type=Path))
@click.option("--target", default=None, help="Response column, e.g. NOX (required but for --kind evaluation).")
@click.option("--features", default=None,
              help="Comma-separated feature columns (default: every numeric column but the target).")
@click.option("--public-key", "public_key_path", required=True, type=click.Path(path_type=Path),
              help="The consortium's public key (a private key file is refused).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Aggregate bundle to write.")
@click.option("--kind", type=click.Choice(["statistics", "coefficients", "evaluation"]), default="statistics",
              show_default=True, help="What each factory encrypts (evaluation needs --model).")
@click.option("--model", "model_path", default=None, type=click.Path(path_type=Path),
              help="Global model JSON whose holdout residuals the factories encrypt (--kind evaluation).")
@click.option("--min-contributors", default=3, show_default=True, type=click.IntRange(min=1),
              help="Fail unless at least this many factories answer in time.")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds the aggregator waits for the factories' replies.")
@click.option("--report", "report_path", default=None, type=click.Path(path_type=Path),
              help="Also write a JSON report: contributors, missing factories and why.")
@click.option("--roster", "roster_path", default=None, type=click.Path(path_type=Path),
              help="Consortium roster (hefed roster add): run masked, signed rounds; needs one --identity per file.")
@click.option("--identity", "identity_dirs", multiple=True, type=click.Path(path_type=Path),
              help="A factory's enrollment folder (hefed enroll --out-dir); repeat, in the same order as the data "
              "files. Each goes into its own SuperNode's node config only.")
@click.option("--max-rounds", default=3, show_default=True, type=click.IntRange(1, 10),
              help="Masked rounds: at most this many rounds (a drop-out after the ready step means a new round).")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@click.option("--json", "json_output", is_flag=True, expose_value=False, is_eager=True,
              callback=_flag_to_meta("hefed.json"),
              help="Print the results as one JSON object (machine-readable), nothing else.")
@click.option("--quiet", "-q", is_flag=True, expose_value=False, is_eager=True,
              callback=_flag_to_meta("hefed.quiet"), help="Print nothing but errors.")
def federate(data_paths: tuple[Path, ...], more_data: tuple[Path, ...], target: str | None, features: str | None,
             public_key_path: Path, out: Path, kind: str, model_path: Path | None, min_contributors: int,
             timeout: float, report_path: Path | None, roster_path: Path | None, identity_dirs: tuple[Path, ...],
             max_rounds: int, force: bool) -> None:
    """Trial on one machine: a Flower SuperLink and one SuperNode per --data file on 127.0.0.1.

    Runs the hefed Flower app once (aggregator = ServerApp, each factory = ClientApp),
    stops every process it started and writes the aggregate bundle to --out. Factories
    that do not answer within --timeout are left out and named; the run fails when fewer
    than --min-contributors answered. Decrypt the aggregate with `hefed decrypt`.

    With --roster and one --identity per data file (same order) the factories are the
    enrolled identities and the app runs masked, signed rounds: a ready step fixes the
    participants, and a factory that then fails to deliver makes the app start a new
    round for the others (at most --max-rounds). Decrypt with `hefed decrypt --roster`.
    """
    from hefed.flower import run_local_federation

    paths = [*data_paths, *more_data]
    if not paths:
        raise UsageError("give the factories' tables with --data a.csv b.csv c.csv")
    if kind != "evaluation" and not target:
        raise UsageError("--target is required")
    if kind == "evaluation" and model_path is None:
        raise UsageError("--kind evaluation needs --model")
    if (roster_path is None) != (not identity_dirs):
        raise UsageError("masked rounds need --roster and one --identity per data file")
    if identity_dirs and len(identity_dirs) != len(paths):
        raise UsageError(f"give one --identity per data file, in the same order ({len(paths)} data files, "
                         f"{len(identity_dirs)} identities)")
    check_writable(out, force)
    if report_path is not None:
        check_writable(report_path, force)
    result = run_local_federation(
        paths, target or "", public_key_path, out, _split(features), min_contributors, timeout, kind, model_path,
        force=force, report_path=report_path, roster_path=roster_path,
        identity_dirs=list(identity_dirs) if identity_dirs else None, max_rounds=max_rounds,
    )
    meta = click.get_current_context().meta
    if meta.get("hefed.json"):
        click.echo(json.dumps({
            "ok": True, "out": str(result.out), "kind": result.kind, "contributors": result.contributors,
            "missing": result.missing, "run_id": result.run_id, "seconds": round(result.seconds, 3),
            "masked": roster_path is not None, "round_id": result.round_id, "rounds": result.rounds,
        }))
        return
    if meta.get("hefed.quiet"):
        return
    for attempt in result.rounds:
        dropped = "; ".join(f"{name}: {why}" for name, why in attempt["missing"].items())
        click.echo(f"round {attempt['round']} ({attempt['round_id']}) with {', '.join(attempt['participants'])}: "
                   + ("complete" if attempt["complete"] else f"incomplete, missing {dropped}"))
    masked = f", masked round {result.round_id}" if result.round_id else ""
    click.echo(f"wrote {out}: {result.kind} aggregate of {len(result.contributors)} factories "
               f"({', '.join(result.contributors)}) in {result.seconds:.1f} s (Flower run {result.run_id}{masked})")
    for name, why in result.missing.items():
        click.echo(f"missing {name}: {why}")
    if report_path is not None:
        click.echo(f"wrote {report_path}")
