"""``hefed federate``: a one-machine trial of the Flower deployment.

A thin command over :func:`hefed.flower.run_local_federation`: it starts a
Flower SuperLink and one SuperNode per data file on 127.0.0.1, runs the hefed
Flower app once, stops every process it started and leaves the aggregate
bundle. With ``--roster`` and one ``--identity`` per data file it runs one masked,
signed version 2 round (ready, join, contribute, reveal) that survives drop-outs, and says
who joined, who delivered, who dropped out at which step, and what each step cost;
``--drop-out FACTORY=STEP`` stops that factory's SuperNode once its reply to STEP arrived
(a real drop-out, for demonstrations). With ``--study`` each
SuperNode's node config names the study file and pins its digest, and the target, features
and key come from the study. Every check of
the options is the library's (:class:`hefed.flower.RunSettings`); library errors
propagate to the main group, which prints them as one line.

While the federation runs, each step (SuperLink listening, each SuperNode started
and connected, each factory's answer, bundle or reason for missing, each masked
round) is printed on stderr as it happens: with rich on a terminal, as plain lines
otherwise, and not at all with ``--json`` or ``--quiet``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hefed.errors import UsageError

from .output import emit, output_options, plural, quiet, say

if TYPE_CHECKING:
    from hefed.flower import ProgressEvent


class _FlowerKinds(click.Choice):
    """The bundle kinds that travel by Flower, asked of the kind registry when first needed (not at start-up)."""

    def __init__(self) -> None:
        super().__init__((), case_sensitive=True)

    @property  # type: ignore[override]
    def choices(self) -> Sequence[str]:
        from hefed.kinds import kind_names

        return kind_names(flower=True)

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:
        pass


def _split(text: str | None) -> list[str] | None:
    return [f.strip() for f in text.split(",") if f.strip()] if text else None


def progress_printer(terminal: bool) -> Callable[[ProgressEvent], None]:
    """Print each progress event on stderr as it comes: rich on a terminal, plain lines otherwise."""
    started = time.monotonic()
    if not terminal:
        def plain(event: ProgressEvent) -> None:
            click.echo(f"[{time.monotonic() - started:6.1f} s] {event.message}", err=True)

        return plain

    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False)
    marks = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[cyan]•[/]"}

    def rich(event: ProgressEvent) -> None:
        console.print(f"[dim]{time.monotonic() - started:6.1f} s[/] {marks[event.ok]} {escape(event.message)}")

    return rich


@click.command()
@click.option("--data", "data_paths", multiple=True, type=click.Path(path_type=Path),
              help="One table per factory (CSV, TSV, .xlsx or Parquet; repeat, or list several after one --data). "
              "Each gets its own SuperNode; factory ids are the file names without suffix.")
@click.argument("more_data", nargs=-1, type=click.Path(path_type=Path))
@click.option("--study", "study_path", default=None, type=click.Path(path_type=Path),
              help="The consortium's study (hefed study new): every SuperNode's node config names it and pins its "
              "digest; target, features and key come from it (a contradicting option is refused).")
@click.option("--target", default=None,
              help="Response column, e.g. NOX (required but for --kind evaluation or with --study).")
@click.option("--features", default=None,
              help="Comma-separated feature columns (default: every numeric column but the target).")
@click.option("--public-key", "public_key_path", default=None, type=click.Path(path_type=Path),
              help="The consortium's public key (a private key file is refused; required without --study).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Aggregate bundle to write.")
@click.option("--kind", type=_FlowerKinds(), default="statistics", show_default=True,
              help="What each factory encrypts: a bundle kind that travels by Flower (evaluation needs --model).")
@click.option("--model", "model_path", default=None, type=click.Path(path_type=Path),
              help="Global model JSON whose holdout residuals the factories encrypt (--kind evaluation).")
@click.option("--min-contributors", default=None, type=int,
              help="Fail unless at least this many factories answer in time (default: 3, or the study's; never "
              "below the study's).")
@click.option("--timeout", default=60.0, show_default=True, type=float,
              help="Seconds the aggregator waits for the factories' replies.")
@click.option("--report", "report_path", default=None, type=click.Path(path_type=Path),
              help="Also write a JSON report: contributors, missing factories and why.")
@click.option("--roster", "roster_path", default=None, type=click.Path(path_type=Path),
              help="Consortium roster (hefed roster add): run masked, signed rounds; needs one --identity per file.")
@click.option("--identity", "identity_dirs", multiple=True, type=click.Path(path_type=Path),
              help="A factory's enrollment folder (hefed enroll --out-dir); repeat, in the same order as the data "
              "files. Each goes into its own SuperNode's node config only.")
@click.option("--drop-out", "drop_outs", multiple=True, metavar="FACTORY=STEP",
              help="Masked rounds, for demonstrations: stop FACTORY's SuperNode (SIGTERM) as soon as its reply to STEP "
              "(ready, join or contribute) arrived, so it drops out of the next step; repeat for several.")
@click.option("--max-rounds", default=None, type=int, hidden=True,
              help="Deprecated and ignored: a masked run is one round that survives drop-outs.")
@click.option("--family", type=click.Choice(["binomial", "poisson", "gamma"]), default=None,
              help="Fit the study's GLM by encrypted IRLS: every round in this one Flower run, the key holder (this "
              "process, with --private-key) signing each iteration's coefficients; --out gets the signed results.")
@click.option("--private-key", "private_key_path", default=None, type=click.Path(path_type=Path),
              help="--family: the key holder's private key (keyholder.key.json beside it signs the coefficients).")
@click.option("--max-iter", default=100, show_default=True, type=int, help="--family: most IRLS iterations.")
@click.option("--tol", default=1e-12, show_default=True, type=float,
              help="--family: converged when max |Δβ| / (|β| + 1e-8) ≤ tol.")
@click.option("--force", is_flag=True, help="Replace an existing output file.")
@output_options
def federate(data_paths: tuple[Path, ...], more_data: tuple[Path, ...], study_path: Path | None, target: str | None,
             features: str | None, public_key_path: Path | None, out: Path, kind: str, model_path: Path | None,
             min_contributors: int | None,
             timeout: float, report_path: Path | None, roster_path: Path | None, identity_dirs: tuple[Path, ...],
             drop_outs: tuple[str, ...], max_rounds: int | None, family: str | None, private_key_path: Path | None,
             max_iter: int, tol: float, force: bool) -> None:
    """Trial on one machine: a Flower SuperLink and one SuperNode per --data file on 127.0.0.1.

    Runs the hefed Flower app once (aggregator = ServerApp, each factory = ClientApp),
    stops every process it started and writes the aggregate bundle to --out. Factories
    that do not answer within --timeout are left out and named; the run fails when fewer
    than --min-contributors answered. Each step is shown on stderr as it happens (not
    with --json or --quiet). Decrypt the aggregate with `hefed decrypt`.

    With --roster and one --identity per data file (same order) the factories are the
    enrolled identities and the app runs one masked, signed round that survives drop-outs:
    a signed ready step fixes the participants, they join (threshold t: more than half,
    at least --min-contributors), those who joined contribute, and those who delivered
    reveal the shares that remove the drop-outs' masks; down to t survivors nothing is
    re-run. Decrypt with `hefed decrypt --roster`. --drop-out gt_2013=join stops
    gt_2013's SuperNode right after it joined (a real drop-out, for demonstrations).

    With --study the factories compute what the study says (each SuperNode's node config
    names the study file and pins its digest); the aggregate carries the study's digest.
    Decrypt with `hefed decrypt --study`.
    """
    from hefed.flower import run_local_federation

    if family is not None:
        _federate_glm([*data_paths, *more_data], study_path, private_key_path, out, family, max_iter, tol, timeout,
                      force)
        return
    if (roster_path is None) != (not identity_dirs):  # how the options pair up; the library checks the rest
        raise UsageError("masked rounds need --roster and one --identity per data file")
    if study_path is None and public_key_path is None:
        raise UsageError("give --public-key, or a --study that carries the key")
    if max_rounds is not None:
        click.echo("hefed federate: --max-rounds is deprecated and ignored: a masked run is one round that survives "
                   "drop-outs (no re-runs)", err=True)
    progress = None if quiet() else progress_printer(sys.stderr.isatty())
    result = run_local_federation(
        [*data_paths, *more_data], target, public_key_path, out, _split(features), min_contributors, timeout, kind,
        model_path, force=force, report_path=report_path, roster_path=roster_path,
        identity_dirs=list(identity_dirs) or None, progress=progress, study_path=study_path,
        drop_outs=_drop_outs(drop_outs),
    )
    masked_report = result.report.get("masked")
    steps = list(masked_report.get("steps") or []) if isinstance(masked_report, dict) else []
    emit(out=str(out), kind=result.kind, contributors=result.contributors, missing=result.missing,
         run_id=result.run_id, seconds=round(result.seconds, 3), masked=roster_path is not None,
         round_id=result.round_id, rounds=result.rounds, steps=steps, study=result.study)
    for attempt in result.rounds:
        say(_round_line(attempt))
    if steps:
        say("steps: " + "; ".join(_step_text(step) for step in steps))
    masked = f", masked round {result.round_id}" if result.round_id else ""
    masked += f", study {result.study}" if result.study else ""
    say(f"wrote {out}: {result.kind} aggregate of {plural(len(result.contributors), 'factory', 'factories')} "
        f"({', '.join(result.contributors)}) in {result.seconds:.1f} s (Flower run {result.run_id}{masked})")
    for name, why in result.missing.items():
        say(f"missing {name}: {why}")
    if report_path is not None:
        say(f"wrote {report_path}")


def _federate_glm(data_paths: list[Path], study_path: Path | None, private_key_path: Path | None, out: Path,
                  family: str, max_iter: int, tol: float, timeout: float, force: bool) -> None:
    """``--family``: every IRLS round of the study's GLM in one Flower run (:func:`hefed.flower._glm.run_local_glm`)."""
    from hefed.flower._glm import run_local_glm

    if study_path is None or private_key_path is None:
        raise UsageError("--family needs --study (it names the key holder and fixes the GLM) and --private-key")
    progress = None if quiet() else progress_printer(sys.stderr.isatty())
    report = run_local_glm(data_paths, study_path, private_key_path, out, family=family, max_iter=max_iter, tol=tol,
                           timeout=timeout, force=force, progress=progress)
    emit(out=str(out), rounds=report["rounds"], contributors=report["contributors"], study=report.get("study"))
    say(f"wrote {out}: the {family} GLM of {plural(len(report['contributors']), 'factory', 'factories')} "
        f"({', '.join(report['contributors'])}) after {report['rounds']} encrypted rounds in one Flower run")


def _drop_outs(values: tuple[str, ...]) -> dict[str, str] | None:
    """``("gt_2013=join", ...)`` → ``{"gt_2013": "join"}`` (the library checks the factories and steps)."""
    out: dict[str, str] = {}
    for value in values:
        factory, sep, step = value.partition("=")
        if not sep or not factory.strip() or not step.strip():
            raise UsageError(f"--drop-out {value!r}: give FACTORY=STEP, e.g. gt_2013=join")
        if factory.strip() in out:
            raise UsageError(f"--drop-out names {factory.strip()!r} twice")
        out[factory.strip()] = step.strip()
    return out or None


def _step_text(step: dict[str, Any]) -> str:
    """``join 13.8 s (5 sent, 5 ok; 9.8 KB out, 5.1 KB in)``; the aggregator's own steps give their time only."""
    text = f"{step['step']} {step['seconds']:.1f} s"
    if step.get("sent"):
        text += (f" ({step['sent']} sent, {step['ok']} ok; {step['bytes_sent'] / 1000:.1f} KB out, "
                 f"{step['bytes_received'] / 1000:.1f} KB in)")
    return text


def _round_line(attempt: dict[str, Any]) -> str:
    dropped = "; ".join(f"{name} ({why})" for name, why in attempt["missing"].items())
    line = (f"round {attempt['round']} ({attempt['round_id']}) with {', '.join(attempt['participants'])}"
            + (f", threshold {attempt['threshold']}" if attempt.get("threshold") else "") + ": "
            + ("complete" if attempt["complete"] else "failed"))
    if attempt.get("joined") is not None and attempt["joined"] != attempt["participants"]:
        line += f"; joined {', '.join(attempt['joined']) or 'none'}"
    if dropped:
        line += f"; dropped out: {dropped}"
    return line
