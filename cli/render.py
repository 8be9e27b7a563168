"""One renderer per result type: what a command prints for its result, as text and tables or as --json.

Every command ends with one call here. A renderer prints the human form (rich tables, through
:func:`~hefed_cli.output.show`, which fits a terminal and never wraps or truncates redirected output)
and emits the ``--json`` form, built from the result's ``to_dict`` where the result has one (files a
command wrote are named by path beside it). Nothing here computes: every number comes from the result.

Commands import this module when they run (never for ``--help``); it imports rich and only the light
library types it dispatches on (:mod:`hefed.stats`). Heavier types appear in annotations only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import singledispatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from hefed.stats import (
    ONES,
    CoefficientAggregate,
    ColumnSummary,
    EvaluationSums,
    FoldStatistics,
    SufficientStatistics,
)

from .output import emit, plural, say, show

if TYPE_CHECKING:
    from phe import PaillierPublicKey

    from hefed.analysis import FinetuneResult
    from hefed.models import LinearModel
    from hefed.protocol import Bundle, Roster, Study
    from hefed.roles import EncryptResult, Release, RidgeCVResult
    from hefed.sim import Comparison, DemoReport, FedAvgReport


def _num(value: float | None, fmt: str = ".6g") -> str:
    return "n/a" if value is None or value != value else format(value, fmt)


def _names(names: Sequence[str]) -> str:
    return ", ".join(names)


def _notes(notes: Sequence[str]) -> None:
    for note in notes:
        say(f"note: {note}")


# --- key holder -------------------------------------------------------------------------------
def render_keypair(public_key: PaillierPublicKey, public_path: Path, private_path: Path, fingerprint: str,
                   release_private: Path, release_public: Path) -> None:
    """keygen: where the keys went (never the private key itself)."""
    bits = public_key.n.bit_length()
    say(f"wrote {public_path} (publish it) and {private_path} (mode 0600, keep it secret)")
    say(f"wrote {release_public} (name it in the study: --key-holder) and {release_private} (mode 0600, signs "
        "what the key holder releases)")
    say(f"key fingerprint {fingerprint}, {bits} bits")
    emit(public_key=public_path, private_key=private_path, fingerprint=fingerprint, bits=bits,
         release_public=release_public, release_private=release_private)


def render_ledger(ledger: Any, signed: bool) -> None:
    """decrypt: what the key holder's ledger and release key did."""
    if ledger is not None:
        say(f"ledger {ledger.path}: {plural(len(ledger.entries), 'decryption')} recorded, "
            f"{plural(len(set(ledger.sets)), 'contributor set')}")
    say("signed with the key holder's release key" if signed else "not signed (no release key given)")


@singledispatch
def render_sums(result: Any, out: Path) -> None:
    """decrypt: the decrypted sums of any kind (a kind without its own renderer is described by the registry)."""
    kind = _kind(result)
    n = getattr(result, "n", None)
    rows = f" of {plural(n, 'row')}" if isinstance(n, int) else ""
    say(f"wrote {out}: decrypted {kind.name} sums{rows} from {_factories(result.contributors)} ({kind.description})")
    emit(out=out, kind=kind.name, n=n, contributors=result.contributors)


def _kind(result: Any) -> Any:
    from hefed.kinds import kind_of_result

    return kind_of_result(result)


def _factories(contributors: Sequence[str]) -> str:
    """'3 factories (a, b, c)'."""
    return f"{plural(len(contributors), 'factory')} ({_names(contributors)})"


def _sums_line(out: Path, what: str, result: SufficientStatistics | FoldStatistics | CoefficientAggregate,
               **extra: object) -> None:
    say(f"wrote {out}: {what} of {plural(result.n, 'row')} from {_factories(result.contributors)}")
    emit(out=out, kind=_kind(result).name, n=result.n, contributors=result.contributors, **extra)


@render_sums.register
def _(result: SufficientStatistics, out: Path) -> None:
    _sums_line(out, "statistics", result, target=result.target, features=result.features)


@render_sums.register
def _(result: FoldStatistics, out: Path) -> None:
    _sums_line(out, f"per-fold statistics ({plural(len(result.folds), 'fold')})", result, folds=len(result.folds))


@render_sums.register
def _(result: CoefficientAggregate, out: Path) -> None:
    _sums_line(out, "coefficient aggregate", result)


@render_sums.register
def _(result: ColumnSummary, out: Path) -> None:
    say(f"wrote {out}: consortium summary from {_factories(result.contributors)}")
    table = Table(title="consortium per-column summary (exact)")
    for column in ("column", "count", "mean", "std"):
        table.add_column(column, justify="left" if column == "column" else "right")
    for name, count, mean, std in result.table():
        table.add_row(name, str(count), _num(mean, ".8g"), _num(std, ".8g"))
    show(table)
    emit(out=out, kind=_kind(result).name, contributors=result.contributors,
         columns={name: {"count": c, "mean": m, "std": s} for name, c, m, s in result.table()})


@render_sums.register
def _(result: EvaluationSums, out: Path) -> None:
    say(f"wrote {out}: holdout evaluation of {plural(result.n, 'row')} from {_factories(result.contributors)}")
    render_metrics("consortium holdout metrics", result.metrics(), emit_json=False)
    emit(out=out, kind=_kind(result).name, contributors=result.contributors, metrics=result.metrics())


# --- consortium -------------------------------------------------------------------------------
def render_identity(factory_id: str, public_path: Path, private_path: Path) -> None:
    """enroll: the two identity files."""
    say(f"wrote {public_path} (give it to the consortium for the roster) and {private_path} (mode 0600, keep it)")
    emit(factory_id=factory_id, public_identity=public_path, private_identity=private_path)


def render_roster(roster: Roster, path: Path, *, listing: bool) -> None:
    """roster add (one line) and roster list (a table of members and signing keys)."""
    members = sorted(roster.members)
    if listing:
        table = Table(title=f"roster {path} (digest {roster.digest()}): {plural(len(members), 'member')}")
        table.add_column("factory")
        table.add_column("signing key (Ed25519)")
        for factory_id in members:
            table.add_row(factory_id, roster.members[factory_id].public_dict()["signing_public"])
        show(table)
    else:
        say(f"wrote {path}: {plural(len(members), 'member')} ({_names(members)})")
    emit(roster=path, members=members, digest=roster.digest())


def render_study(study: Study, path: Path, *, wrote: bool) -> None:
    """study new / show: every term of the agreement, and the digest to compare out of band."""
    if wrote:
        say(f"wrote {path}")
    table = Table(title=f"study {study.digest}{f' ({study.title})' if study.title else ''}")
    table.add_column("term")
    table.add_column("agreed")
    unit = {spec.name: spec.unit for spec in [study.target, *study.features]}
    table.add_row("key", f"{study.key_fingerprint} ({study.public_key.n.bit_length()} bits)")
    table.add_row("roster", study.roster_digest or "any (no masked-round roster pinned)")
    table.add_row("target", study.target.name + (f" ({unit[study.target.name]})" if unit[study.target.name] else ""))
    for spec in study.features:
        levels = f", categories {', '.join(spec.categories)} (one-hot)" if spec.categories else ""
        table.add_row("feature", spec.name + (f" ({spec.unit})" if spec.unit else "") + levels)
    encoding = study.encoding
    table.add_row("encoding", f"grid 2^-{encoding.frac_bits}, range 2^{encoding.int_bits}, up to "
                  f"{encoding.max_contributors} factories")
    for name, column in encoding.columns:
        table.add_row("  column", f"{name}: grid 2^-{column.frac_bits}, range 2^{column.int_bits}")
    table.add_row("kinds", "; ".join(f"{k} {dict(v) or ''}".strip() for k, v in sorted(study.kinds.items())))
    cleaning = study.cleaning
    table.add_row("cleaning", f"missing={cleaning.missing}, impute={cleaning.impute}, max_z={cleaning.max_z}")
    table.add_row("holdout", "none" if study.holdout is None else
                  f"{study.holdout.test_fraction:g} of the rows (seed {study.holdout.seed})")
    table.add_row("DP bounds", "none" if study.bounds is None else _names(sorted(study.bounds.columns)))
    table.add_row("threshold", plural(study.min_contributors, "factory", "factories") + " at least")
    show(table)
    say(f"digest {study.digest}  (every party compares this out of band before encrypting)")
    emit(study=path, digest=study.digest, **{k: v for k, v in study.to_dict().items() if k != "digest"})


# --- factory ----------------------------------------------------------------------------------
def render_encrypt(result: EncryptResult, out: Path, holdout_out: Path | None, seed: int) -> None:
    """encrypt: what cleaning did, the bundle (masked and signed for which round), the holdout kept back."""
    bundle, report = result.bundle, result.report
    for line in report.lines() if report else []:
        say(line)
    say(f"wrote {out}: {bundle.kind} bundle, {plural(len(bundle.ciphertexts), 'ciphertext')}, target "
        f"{bundle.target!r}, {plural(len(bundle.features), 'feature')} ({_names(bundle.features)})")
    if bundle.round_id is not None:
        say(f"masked and signed for round {bundle.round_id}: only a sum over the round's survivors, unmasked by "
            "their reveals, can be decrypted")
    if result.holdout is not None:
        say(f"kept {plural(len(result.holdout), 'holdout row')} out of the statistics (seed {seed})")
        if holdout_out is not None:
            say(f"wrote holdout {holdout_out}")
    emit(bundle=out, kind=bundle.kind, ciphertexts=len(bundle.ciphertexts), target=bundle.target,
         features=bundle.features, masked=bundle.round_id is not None, round_id=bundle.round_id,
         holdout_rows=None if result.holdout is None else len(result.holdout), holdout_file=holdout_out,
         dropped_missing_rows=[r + 1 for r in report.dropped_missing] if report else [],
         dropped_outlier_rows=[r + 1 for r in report.dropped_outliers] if report else [],
         imputed_cells=report.imputed_cells if report else 0,
         clipped_cells=report.clipped_cells if report else 0,
         rounded_values=dict(report.rounding.counts) if report else {},
         left_out_columns=dict(report.left_out) if report else {})


def render_metrics(title: str, metrics: Mapping[str, float], *, emit_json: bool = True, **extra: object) -> None:
    """Regression metrics (n, MSE, RMSE, MAE, R²) as a one-row table."""
    table = Table(title=title)
    for name in ("n", "mse", "rmse", "mae", "r2"):
        table.add_column(name.upper() if name != "r2" else "R²", justify="right")
    table.add_row(str(metrics["n"]), *(_num(metrics[k]) for k in ("mse", "rmse", "mae", "r2")))
    show(table)
    if emit_json:
        emit(metrics=dict(metrics), **extra)


def render_evaluation_bundle(bundle: Bundle, out: Path) -> None:
    """evaluate --out: the encrypted evaluation bundle written."""
    say(f"wrote {out}: encrypted evaluation bundle ({plural(len(bundle.ciphertexts), 'ciphertext')})")


def render_finetune(result: FinetuneResult, data: Path, out: Path) -> None:
    """finetune: holdout metrics of the global and the fine-tuned model, the CV curve, λ, notes."""
    if result.global_metrics is not None and result.finetuned_metrics is not None:
        show(f"holdout metrics on {plural(result.n_holdout, 'held-out row')} of {data} (they stay here):")
        table = Table()
        for column in ("metric", "global", "fine-tuned"):
            table.add_column(column, justify="left" if column == "metric" else "right")
        for key, label in (("mse", "MSE"), ("rmse", "RMSE"), ("mae", "MAE"), ("r2", "R²")):
            table.add_row(label, _num(result.global_metrics[key]), _num(result.finetuned_metrics[key]))
        show(table)
    else:
        show("no holdout (--test-fraction 0): no holdout metrics")
    show(f"local {result.folds}-fold cross-validation on {plural(result.n_train, 'training row')} "
         f"(seed {result.seed}):")
    curve = Table()
    curve.add_column("λ", justify="right")
    curve.add_column("CV MSE", justify="right")
    curve.add_column("")
    for lam, mse in zip(result.lambdas, result.cv_mse, strict=True):
        curve.add_row(f"{lam:.4g}", _num(mse), "← chosen" if lam == result.lam else "")
    show(curve)
    show(f"chosen λ = {result.lam:.6g} (penalty toward the global model, intercept included)")
    _notes(result.notes)
    say(f"wrote {out}")
    emit(out=out, **result.to_dict())


# --- aggregator -------------------------------------------------------------------------------
def render_aggregate(bundle: Bundle, out: Path) -> None:
    """aggregate: the kind and the factories summed."""
    masked = f", masked round {bundle.round_id}" if bundle.round_id is not None else ""
    say(f"wrote {out}: {bundle.kind} aggregate of {_factories(bundle.contributors)}{masked}")
    emit(aggregate=out, kind=bundle.kind, contributors=bundle.contributors, round_id=bundle.round_id)


# --- analyst ----------------------------------------------------------------------------------
def render_curve(curve: RidgeCVResult) -> None:
    """The exact ridge validation curve, the chosen α marked."""
    folds = len(curve.fold_mse[0]) if curve.fold_mse else 0
    table = Table(title=f"ridge validation curve ({folds}-fold CV, exact)")
    table.add_column("alpha", justify="right")
    table.add_column("mean held-out MSE", justify="right")
    for i, (alpha, mse) in enumerate(zip(curve.alphas, curve.mean_mse, strict=True)):
        mark = "  ← chosen" if i == curve.best_index else ""
        table.add_row(f"{alpha:g}", ("singular" if mse != mse else f"{mse:.8g}") + mark)
    show(table)


def render_model(model: LinearModel) -> None:
    """A model: the library's statsmodels-style summary, or its coefficients where it has no inference
    (the n-weighted average of coefficient mode, a differentially private release)."""
    if model.has_inference:
        say(model.summary())
        say(f"factories: {_names(model.contributors_)}")
        return
    title = "differentially private model" if model.dp_ else "n-weighted average model"
    table = Table(title=f"{model.target_}: {title}")
    table.add_column("term")
    table.add_column("coefficient", justify="right")
    for name, value in model.coefficients():
        table.add_row(name, f"{value:.6g}")
    show(table)
    say(f"n = {model.n_samples_}   factories: {_names(model.contributors_)}")


def render_dp_accounting(dp: Mapping[str, Any]) -> None:
    """The accounting of a differentially private release (model.json's DP block): budget, bounds, noise per
    statistic, standard errors; its warnings on stderr, even with --quiet or --json."""
    say(f"DIFFERENTIALLY PRIVATE RELEASE: ({dp['epsilon']:g}, {dp['delta']:g})-DP with respect to {dp['unit']}: "
        f"rho={dp['rho']:.6g} (zCDP; delta {dp['delta_achieved']:.3g} at epsilon {dp['epsilon']:g}).")
    say(f"mechanism: {dp['mechanism']}")
    say(f"bounds: {dp['bounds_source']}")
    bounds = Table(title="bounds every factory clipped to")
    for column in ("column", "lo", "hi"):
        bounds.add_column(column, justify="left" if column == "column" else "right")
    for name, (lo, hi) in dp["bounds"].items():
        bounds.add_row(name, _num(lo), _num(hi))
    show(bounds)
    noise = Table(title=f"discrete Gaussian noise per statistic (data units; sigma = {dp['noise_multiplier']:.6g} x "
                  f"sensitivity; L2 sensitivity of all {dp['noised_statistics']}: {dp['l2_sensitivity']:.6g})")
    for column in ("statistic", "sensitivity", "sigma"):
        noise.add_column(column, justify="left" if column == "statistic" else "right")
    for row in dp["statistics"]:
        a, b = row["a"], row["b"]
        name = ("n" if b == ONES else f"sum {b}") if a == ONES else f"sum {a}*{b}"
        noise.add_row(name, _num(row["sensitivity"]), _num(row["sigma"]))
    show(noise)
    errors = dp.get("released", {}).get("standard_errors", {})
    if errors:
        table = Table(title="standard errors from the noised statistics")
        for column in ("term", "sampling SE", "DP-noise SE", "total SE"):
            table.add_column(column, justify="left" if column == "term" else "right")
        for term, row in errors.items():
            table.add_row(term, *(_num(row[k]) for k in ("sampling", "dp_noise", "total")))
        show(table)
    say(f"derived from: {dp['derived_from']}")
    say(f"not covered: {dp['not_covered']}")
    for warning in dp.get("warnings", []):
        click.echo(f"hefed: warning: {warning}", err=True)


def render_release(release: Release, out: Path | None) -> None:
    """solve: the validation curve (ridge auto), the model, standardised coefficients, notes, the file."""
    model = release.model
    if release.curve is not None:
        render_curve(release.curve)
    if model.dp_:
        render_dp_accounting(model.dp_)
    elif not model.has_inference:
        say("n-weighted average of the factories' own models (coefficient mode; no pooled inference):")
    render_model(model)
    if model.standardized_:
        source = "the noised statistics" if model.dp_ else "the aggregate"
        table = Table(title=f"standardised coefficients (pooled means and sample SDs from {source})")
        for column in ("feature", "mean", "SD", "coef per SD of feature", "fully standardised"):
            table.add_column(column, justify="left" if column == "feature" else "right")
        for name, row in model.standardized_.items():
            table.add_row(name, *(_num(row[k]) for k in ("mean", "sd", "per_sd", "standardized")))
        show(table)
    _notes(release.notes)
    if out is not None:
        say(f"wrote {out}")
    emit(model=out, **release.to_dict())


# --- simulations ------------------------------------------------------------------------------
def _comparison_table(report: Comparison) -> None:
    from hefed.sim import MODELS

    table = Table(title=f"holdout MSE and R² of {report.target}: local-only, federated, centralised, fine-tuned")
    table.add_column("factory")
    table.add_column("n test", justify="right")
    for model_name in MODELS:
        table.add_column(f"{model_name} MSE", justify="right")
        table.add_column(f"{model_name} R²", justify="right")
    for row in [*report.rows, report.overall]:
        cells = [str(row["factory"]), str(row["n_test"])]
        for model_name in MODELS:
            cells += [f"{row[model_name + '_mse']:.6g}", f"{row[model_name + '_r2']:.4f}"]
        table.add_row(*cells)
    show(table)
    show(f"largest coefficient difference federated vs centralised: {report.max_abs_coef_diff:.3g} "
         f"(relative {report.max_rel_coef_diff:.2e}); centralised = scikit-learn on pooled plaintext, "
         "possible only in a simulation")
    enc = report.encrypted_overall
    show(f"federated overall from encrypted evaluation bundles: MSE {enc['mse']:.6g}, RMSE {enc['rmse']:.6g}, "
         f"MAE {enc['mae']:.6g}, R² {enc['r2']:.4f}")
    for name, dropped in report.dropped_local.items():
        show(f"  {name}: local model drops {_names(dropped)} (constant or collinear there)")


def render_comparison(report: Comparison, key_bits: int) -> None:
    """compare: the table of the four models on every factory's holdout."""
    show(f"{plural(len(report.rows), 'factory')}, target {report.target}, {key_bits}-bit simulation key")
    _comparison_table(report)
    emit(**report.to_dict(), key_bits=key_bits)


def render_demo(report: DemoReport) -> None:
    """demo: the consortium, the model and the true emission factors, the checks, the comparison, the timings."""
    from hefed.datasets import EMISSION_FACTORS, FACTOR_UNITS

    show(f"[bold]hefed demo[/bold]: {plural(len(report.factory_rows), 'synthetic plant')}, "
         f"{report.key_bits}-bit Paillier key")
    plants = Table(title="consortium (each plant's data stays on site)")
    plants.add_column("factory")
    plants.add_column("daily records", justify="right")
    for name, rows in report.factory_rows.items():
        plants.add_row(name, str(rows))
    show(plants)
    model = report.model
    render_model(model)
    if model.has_inference:
        ci = model.inference().conf_int()
        truth = Table(title="recovered vs true emission factors")
        for column in ("term", "coefficient", "95% confidence interval", "true factor", "unit"):
            truth.add_column(column, justify="left" if column in ("term", "unit") else "right")
        for i, (name, value) in enumerate(model.coefficients()):
            true = EMISSION_FACTORS.get(name)
            truth.add_row(name, f"{value:.6g}", f"[{_num(ci[i][0], '.4g')}, {_num(ci[i][1], '.4g')}]",
                          "" if true is None else f"{true:.4f}", FACTOR_UNITS.get(name, ""))
        show(truth)
    show(f"federated vs centralised fit on the pooled plaintext (scikit-learn): largest relative "
         f"coefficient difference {report.max_rel_diff_centralised:.2e}")
    show("federated vs exact solve of the pooled plaintext: "
         + ("identical, rational for rational" if report.equals_exact_pooled else "[red]DIFFERENT[/red]"))
    if report.comparison is not None:
        _comparison_table(report.comparison)
    steps = Table(title=f"time per step (bundle size {report.bundle_bytes} bytes per factory)")
    steps.add_column("step")
    steps.add_column("seconds", justify="right")
    for step, seconds in report.timings:
        steps.add_row(step, f"{seconds:.3f}")
    steps.add_row("total", f"{sum(s for _, s in report.timings):.3f}")
    show(steps)
    if report.report_path is not None:
        say(f"wrote the consortium's report to {report.report_path}")
    emit(report=report.report_path,
         model={k: v for k, v in model.to_dict().items() if k not in ("format", "version", "exact")},
         equals_exact_pooled=report.equals_exact_pooled, max_rel_diff_centralised=report.max_rel_diff_centralised,
         timings=dict(report.timings), bundle_bytes=report.bundle_bytes, key_bits=report.key_bits,
         comparison=report.comparison.to_dict() if report.comparison is not None else None)


def render_fedavg(report: FedAvgReport) -> None:
    """simulate: per-round gap of FedAvg to the exact statistics-mode model, then the exact model and the limit."""
    show(f"FedAvg (proximal ridge, mu={report.mu:g}, {report.key_bits}-bit key) vs the exact statistics-mode "
         f"model: {plural(len(report.n_train), 'factory')}, target {report.target}")
    table = Table()
    for column in ("round", "rel. coef error", "with intercept", "holdout MSE", "MSE / exact MSE", "seconds"):
        table.add_column(column, justify="right")
    for r in report.rounds:
        table.add_row(str(r.round), f"{r.rel_coef_error:.4g}", f"{r.rel_param_error:.4g}",
                      f"{r.holdout_mse:.6g}", f"{r.holdout_mse / report.exact_holdout_mse:.4g}",
                      f"{r.seconds:.3f}" if r.round else "start θ⁰ = 0")
    show(table)
    show(f"exact model, one encrypted round of statistics: holdout MSE {report.exact_holdout_mse:.6g}, "
         f"relative coefficient error 0 by definition ({report.exact_seconds:.3f} s)")
    show(f"limit of FedAvg at mu={report.mu:g} (exact fixed point): relative coefficient error "
         f"{report.fixed_point_error:.4g} (with intercept {report.fixed_point_param_error:.4g}), holdout MSE "
         f"{report.fixed_point_holdout_mse:.6g}; contraction per round {report.contraction:.4g}")
    if report.plot_path is not None:
        show(f"wrote {report.plot_path}")
    emit(**report.to_dict(), plot=report.plot_path)
