"""The ``hefed`` command line: a thin layer over the ``hefed`` library.

Each command parses its options, calls one library function and prints.
Errors from the library (:class:`hefed.errors.HefedError`) are printed as one
line on stderr with exit code 1 (bad data, refused operation) or 2 (bad
usage); ``hefed --debug COMMAND`` shows the traceback instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

import hefed
from hefed._files import check_writable
from hefed._keys import DEFAULT_BITS
from hefed.data import Bounds, Cleaning, Holdout, write_table
from hefed.datasets import load_consortium
from hefed.errors import HefedError, UsageError
from hefed.kinds import CoefficientsRequest, FoldStatisticsRequest, StatisticsRequest, SummaryRequest, load_result
from hefed.protocol import Masking, Roster, load_identity, load_round_inputs, new_round, roster_add
from hefed.protocol import enroll as enroll_factory
from hefed.roles import (
    DifferentialPrivacy,
    RidgeCVResult,
    decrypt_bundle,
    encrypt_evaluation,
    evaluate_local,
    release_model,
)
from hefed.sim import MODELS, Comparison, compare_models
from hefed.stats import CoefficientAggregate, ColumnSummary, Encoding, EvaluationSums, FoldStatistics

from .federate import federate
from .options import consortium_options, encryption_option, parse_floats, split_names
from .output import describe_error, emit, exit_code, output_options, report_error, say, show
from .simulate import finetune, simulate


class HefedGroup(click.Group):
    """Turns library errors into one-line messages and exit codes."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except HefedError as exc:
            if ctx.meta.get("hefed.debug"):
                raise
            code = exit_code(exc)
            report_error(ctx, describe_error(exc), code)
            ctx.exit(code)
        except KeyboardInterrupt:
            click.echo("hefed: interrupted", err=True)
            ctx.exit(130)
        except (OSError, MemoryError) as exc:
            if ctx.meta.get("hefed.debug"):
                raise
            report_error(ctx, str(exc), 1)
            ctx.exit(1)


@click.group(cls=HefedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(hefed.__version__, prog_name="hefed")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Exact federated linear regression of emissions under Paillier encryption.

    Roles: the key holder runs keygen and decrypt, each factory runs encrypt,
    the aggregator runs aggregate, and anyone with the decrypted aggregate runs solve.
    """
    ctx.meta["hefed.debug"] = debug


force_option = click.option("--force", is_flag=True, help="Replace an existing output file.")


@main.command()
@output_options
@click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for public_key.json and private_key.json (created if missing).")
@click.option("--bits", default=DEFAULT_BITS, show_default=True, type=int,
              help="Size of the modulus n in bits (2048 or more).")
@click.option("--insecure-test-key", is_flag=True, help="Allow keys below 2048 bits, for tests only.")
@force_option
def keygen(out_dir: Path, bits: int, insecure_test_key: bool, force: bool) -> None:
    """Key holder: make a Paillier key pair (pheutil JSON format)."""
    public_path, private_path = out_dir / "public_key.json", out_dir / "private_key.json"
    public_key, private_key = hefed.generate_keypair(bits, insecure_test_key=insecure_test_key)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in (public_path, private_path):
        check_writable(path, force)
    hefed.save_private_key(private_key, private_path, force=force)
    hefed.save_public_key(public_key, public_path, force=force)
    say(f"wrote {public_path} (publish it) and {private_path} (mode 0600, keep it secret)")
    say(f"key fingerprint {hefed.key_fingerprint(public_key)}, {bits} bits")
    emit(public_key=public_path, private_key=private_path, fingerprint=hefed.key_fingerprint(public_key), bits=bits)


@main.command()
@output_options
@click.option("--factory-id", required=True, help="This factory's id (letters, digits, . _ -).")
@click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for identity.key.json (mode 0600) and identity.pub.json.")
@force_option
def enroll(factory_id: str, out_dir: Path, force: bool) -> None:
    """Factory: make its signing (Ed25519) and key-agreement (X25519) keys for masked rounds."""
    private_path, public_path = enroll_factory(factory_id, out_dir, force)
    say(f"wrote {public_path} (give it to the consortium for the roster) and {private_path} (mode 0600, keep it)")
    emit(factory_id=factory_id, public_identity=public_path, private_identity=private_path)


@main.group()
def roster() -> None:
    """The consortium roster: who may contribute, with their public keys."""


@roster.command("add")
@output_options
@click.argument("roster_path", type=click.Path(path_type=Path))
@click.argument("identities", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--replace", is_flag=True, help="Replace the keys of a factory already in the roster.")
def roster_add_cmd(roster_path: Path, identities: tuple[Path, ...], replace: bool) -> None:
    """Add factories' public identities (identity.pub.json) to ROSTER_PATH (created if missing)."""
    result = roster_add(roster_path, list(identities), replace)
    say(f"wrote {roster_path}: {len(result.members)} members ({', '.join(sorted(result.members))})")
    emit(roster=roster_path, members=sorted(result.members), digest=result.digest())


@roster.command("list")
@output_options
@click.argument("roster_path", type=click.Path(path_type=Path))
def roster_list_cmd(roster_path: Path) -> None:
    """List the members of a roster."""
    result = Roster.load(roster_path)
    table = Table(title=f"roster {roster_path} (digest {result.digest()})")
    table.add_column("factory")
    table.add_column("signing key (Ed25519)")
    for factory_id, member in sorted(result.members.items()):
        table.add_row(factory_id, member.public_dict()["signing_public"])
    show(table)
    emit(roster=roster_path, members=sorted(result.members), digest=result.digest())


@main.group(name="round")
def round_group() -> None:
    """Masked rounds: fix the participants before anyone encrypts."""


@round_group.command("new")
@output_options
@click.option("--roster", "roster_path", required=True, type=click.Path(path_type=Path))
@click.option("--participants", required=True, help="Comma-separated factory ids taking part (from the roster).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Round file to write and distribute.")
@force_option
def round_new(roster_path: Path, participants: str, out: Path, force: bool) -> None:
    """Start a round with a fixed participant list and a fresh random id."""
    check_writable(out, force)
    result = new_round(Roster.load(roster_path), split_names(participants) or [])
    result.save(out, force=force)
    say(f"wrote {out}: round {result.round_id} with {', '.join(result.participants)}")
    emit(round=out, round_id=result.round_id, participants=list(result.participants))


@main.command()
@output_options
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--target", required=True, help="Response column, e.g. co2_t.")
@click.option("--features", default=None,
              help="Comma-separated feature columns (default: every numeric column but the target).")
@click.option("--public-key", "public_key_path", required=True, type=click.Path(path_type=Path))
@click.option("--factory-id", required=True, help="This factory's id (letters, digits, . _ -).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle file to write.")
@click.option("--mode", type=click.Choice(["statistics", "coefficients", "summary"]), default="statistics",
              show_default=True,
              help="statistics: exact sufficient statistics (the pooled model); coefficients: this factory's own "
              "fitted model weighted by n (encrypted FedAvg); summary: per-column count, mean and std round.")
@click.option("--summary", "summary_flag", is_flag=True, help="Same as --mode summary.")
@click.option("--ridge", default=0.0, show_default=True, type=float,
              help="Ridge penalty of the local fit (coefficients mode).")
@click.option("--folds", default=0, show_default=True, type=int,
              help="Also encrypt the statistics of K cross-validation folds (for --ridge auto in solve).")
@click.option("--summary-file", type=click.Path(path_type=Path), default=None,
              help="Decrypted consortium summary, for --impute mean and --max-z.")
@click.option("--impute", type=click.Choice(["mean"]), default=None, help="Fill missing values with consortium means.")
@click.option("--missing", type=click.Choice(["drop", "error"]), default="drop", show_default=True,
              help="Rows with missing values: drop them (and say how many) or refuse, naming them.")
@click.option("--max-z", type=float, default=None, help="Drop rows with |z| above this against the consortium summary.")
@click.option("--test-fraction", default=0.0, show_default=True, type=float,
              help="Keep this fraction of rows out of the statistics, as a holdout for evaluation.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the holdout draw and of the folds.")
@click.option("--holdout-out", type=click.Path(path_type=Path), default=None,
              help="Write the holdout rows here (CSV, or Parquet by suffix); the file stays at the factory.")
@click.option("--frac-bits", default=Encoding.frac_bits, show_default=True, type=int,
              help="Encoding: binary digits below the point (same for every factory).")
@click.option("--int-bits", default=Encoding.int_bits, show_default=True, type=int,
              help="Encoding: values must be below 2^INT_BITS in magnitude (same for every factory).")
@click.option("--max-contributors", default=Encoding.max_contributors, show_default=True, type=int,
              help="Encoding: most factories an aggregate may sum (same for every factory).")
@click.option("--round", "round_path", type=click.Path(path_type=Path), default=None,
              help="Masked, signed round (hefed round new); needs --identity and --roster.")
@click.option("--identity", "identity_path", type=click.Path(path_type=Path), default=None,
              help="This factory's enrollment folder (hefed enroll).")
@click.option("--roster", "roster_path", type=click.Path(path_type=Path), default=None, help="Consortium roster.")
@click.option("--bounds", "bounds_path", type=click.Path(path_type=Path), default=None,
              help="Declared per-column bounds: clip values to them (for a differentially private release).")
@encryption_option
@force_option
def encrypt(data: Path, target: str, features: str | None, public_key_path: Path, factory_id: str, out: Path,
            mode: str, summary_flag: bool, ridge: float, folds: int, summary_file: Path | None, impute: str | None,
            missing: str, max_z: float | None, test_fraction: float, seed: int, holdout_out: Path | None,
            frac_bits: int, int_bits: int, max_contributors: int, round_path: Path | None,
            identity_path: Path | None, roster_path: Path | None, bounds_path: Path | None, encryption: str,
            force: bool) -> None:
    """Factory: compute exact statistics of DATA (CSV or Parquet) and encrypt them."""
    check_writable(out, force)
    if holdout_out is not None:
        if not test_fraction:
            raise UsageError("--holdout-out needs --test-fraction")
        check_writable(holdout_out, force)
    encoding = Encoding(frac_bits=frac_bits, int_bits=int_bits, max_contributors=max_contributors)
    public_key = hefed.load_public_key(public_key_path)
    summary = ColumnSummary.load(summary_file) if summary_file is not None else None
    roster, round_ = load_round_inputs(roster_path, round_path)
    if (identity_path is None) != (round_ is None):
        raise UsageError("--round, --identity and --roster go together")
    masking = (Masking(round_, load_identity(identity_path), roster)
               if identity_path is not None and round_ is not None and roster is not None else None)
    mode = "summary" if summary_flag else mode
    if folds and mode != "statistics":
        raise UsageError("--folds applies to statistics mode only")
    request = (SummaryRequest() if mode == "summary" else CoefficientsRequest(ridge) if mode == "coefficients"
               else FoldStatisticsRequest(folds, seed) if folds else StatisticsRequest())
    result = hefed.encrypt_table(
        data, target, public_key, features=split_names(features), factory_id=factory_id, request=request,
        encoding=encoding,
        cleaning=Cleaning(missing=missing, impute=impute, max_z=max_z, summary=summary,  # type: ignore[arg-type]
                          bounds=Bounds.load(bounds_path) if bounds_path is not None else None),
        holdout=Holdout(test_fraction, seed) if test_fraction and mode != "summary" else None,
        masking=masking, encryption=encryption,  # type: ignore[arg-type]
    )
    for line in result.report.lines() if result.report else []:
        say(line)
    result.bundle.save(out, force=force)
    bundle = result.bundle
    say(
        f"wrote {out}: {bundle.kind} bundle, {len(bundle.ciphertexts)} ciphertexts, target {target!r}, "
        f"{len(bundle.features)} features ({', '.join(bundle.features)})"
    )
    if result.holdout is not None:
        say(f"kept {len(result.holdout)} holdout rows out of the statistics (seed {seed})")
        if holdout_out is not None:
            write_table(result.holdout, holdout_out, force=force)
            say(f"wrote holdout {holdout_out}")
    report = result.report
    emit(bundle=out, kind=bundle.kind, clipped_cells=report.clipped_cells if report else 0,
         ciphertexts=len(bundle.ciphertexts), target=target, features=bundle.features,
         holdout_rows=None if result.holdout is None else len(result.holdout), holdout_file=holdout_out,
         dropped_missing_rows=[r + 1 for r in report.dropped_missing] if report else [],
         dropped_outlier_rows=[r + 1 for r in report.dropped_outliers] if report else [],
         imputed_cells=report.imputed_cells if report else 0)


def print_validation_curve(curve: RidgeCVResult) -> None:
    table = Table(title=f"ridge validation curve ({len(curve.fold_mse[0])}-fold CV, exact)")
    table.add_column("alpha", justify="right")
    table.add_column("mean held-out MSE", justify="right")
    for i, (alpha, mse) in enumerate(zip(curve.alphas, curve.mean_mse, strict=True)):
        mark = "  ← chosen" if i == curve.best_index else ""
        table.add_row(f"{alpha:g}", ("singular" if mse != mse else f"{mse:.8g}") + mark)
    show(table)


@main.command(name="aggregate")
@output_options
@click.argument("bundles", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Aggregate bundle to write.")
@click.option("--roster", "roster_path", type=click.Path(path_type=Path), default=None,
              help="Consortium roster: accept only its members' signed contributions (masked rounds).")
@click.option("--round", "round_path", type=click.Path(path_type=Path), default=None,
              help="The current round: contributions must be signed for it, and all its participants present.")
@force_option
def aggregate_cmd(bundles: tuple[Path, ...], out: Path, roster_path: Path | None, round_path: Path | None,
                  force: bool) -> None:
    """Aggregator: add encrypted bundles without any private key."""
    check_writable(out, force)
    roster, round_ = load_round_inputs(roster_path, round_path)
    result = hefed.aggregate(bundles, roster, round_)
    result.save(out, force=force)
    say(f"wrote {out}: aggregate of {len(result.contributors)} factories ({', '.join(result.contributors)})")
    emit(aggregate=out, kind=result.kind, contributors=result.contributors)


@main.command()
@output_options
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--private-key", "private_key_path", required=True, type=click.Path(path_type=Path))
@click.option("--min-contributors", default=3, show_default=True, type=int,
              help="Refuse aggregates of fewer factories (disclosure threshold).")
@click.option("--allow-insecure-permissions", is_flag=True, help="Load a private key readable by others.")
@click.option("--roster", "roster_path", type=click.Path(path_type=Path), default=None,
              help="Consortium roster to check a masked round aggregate's signed manifests against.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Statistics file to write.")
@force_option
def decrypt(bundle: Path, private_key_path: Path, min_contributors: int,
            allow_insecure_permissions: bool, roster_path: Path | None, out: Path, force: bool) -> None:
    """Key holder: decrypt an aggregate bundle (statistics or evaluation) into plaintext aggregates."""
    check_writable(out, force)
    private_key = hefed.load_private_key(private_key_path, allow_insecure_permissions)
    roster = Roster.load(roster_path) if roster_path is not None else None
    result = decrypt_bundle(hefed.Bundle.load(bundle), private_key, min_contributors, roster)
    result.save(out, force=force)
    if isinstance(result, ColumnSummary):
        say(f"wrote {out}: consortium summary from {len(result.contributors)} factories")
        table = Table(title="consortium per-column summary (exact)")
        for column in ("column", "count", "mean", "std"):
            table.add_column(column, justify="left" if column == "column" else "right")
        for name, count, mean, std in result.table():
            table.add_row(name, str(count), f"{mean:.8g}", f"{std:.8g}")
        show(table)
        emit(out=out, kind="summary", contributors=result.contributors,
             columns={name: {"count": c, "mean": m, "std": s} for name, c, m, s in result.table()})
    elif isinstance(result, EvaluationSums):
        say(f"wrote {out}: holdout evaluation of {result.n} rows from {len(result.contributors)} factories")
        print_metrics("consortium holdout metrics", result.metrics())
        emit(out=out, kind="evaluation", contributors=result.contributors, metrics=result.metrics())
    else:
        what = {CoefficientAggregate: "coefficient aggregate", FoldStatistics: "per-fold statistics"}.get(
            type(result), "statistics")
        say(f"wrote {out}: {what} of {result.n} rows from {len(result.contributors)} factories")
        emit(out=out, kind=what, n=result.n, contributors=result.contributors)


@main.command(name="solve")
@output_options
@click.argument("stats", type=click.Path(path_type=Path))
@click.option("--ridge", default="0", show_default=True,
              help="Ridge penalty (intercept unpenalised), or 'auto' to choose it by cross-validation "
              "from fold statistics (hefed encrypt --folds K).")
@click.option("--alphas", default=None, help="Comma-separated candidate penalties for --ridge auto "
              "(default 0.001,0.01,...,1e6).")
@click.option("--no-intercept", is_flag=True, help="Fit a model through the origin.")
@click.option("--dp-epsilon", type=float, default=None,
              help="Release an (epsilon, delta)-differentially private model (Gaussian mechanism; needs --bounds).")
@click.option("--dp-delta", type=float, default=None, help="The delta of the differentially private release.")
@click.option("--bounds", "bounds_path", type=click.Path(path_type=Path), default=None,
              help="The declared bounds every factory clipped to (hefed encrypt --bounds).")
@click.option("--standardize", is_flag=True,
              help="Also report coefficients per standard deviation of each feature and fully standardised.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Model JSON to write.")
@force_option
def solve_cmd(stats: Path, ridge: str, alphas: str | None, no_intercept: bool, dp_epsilon: float | None,
              dp_delta: float | None, bounds_path: Path | None, standardize: bool, out: Path, force: bool) -> None:
    """Solve the exact global linear model from decrypted aggregate statistics."""
    check_writable(out, force)
    dp = (dp_epsilon, dp_delta, bounds_path)
    if any(v is not None for v in dp) and not all(v is not None for v in dp):
        raise UsageError("a differentially private release needs --dp-epsilon, --dp-delta and --bounds")
    privacy = (DifferentialPrivacy(dp_epsilon, dp_delta, Bounds.load(bounds_path))
               if dp_epsilon is not None and dp_delta is not None and bounds_path is not None else None)
    release = release_model(load_result(stats), ridge, parse_floats(alphas, "--alphas"), not no_intercept,
                            standardize, privacy)
    model, curve = release.model, release.curve
    if curve is not None:
        print_validation_curve(curve)
    model.save(out, force=force)
    if model.dp_:
        say(f"DIFFERENTIALLY PRIVATE RELEASE: (epsilon={model.dp_['epsilon']:g}, delta={model.dp_['delta']:g}) "
            f"with respect to {model.dp_['unit']}; Gaussian noise sigma={model.dp_['sigma']:.4g} on every statistic "
            f"(L2 sensitivity {model.dp_['l2_sensitivity']:.4g}). Not covered: {model.dp_['not_covered']}.")
        print_model(model)
    elif model.has_inference:
        say(model.summary())
    else:
        say("n-weighted average of the factories' own models (coefficient mode; no pooled inference):")
        print_model(model)
    if standardize:
        table = Table(title="standardised coefficients (pooled means and sample SDs from the aggregate)")
        for column in ("feature", "mean", "SD", "coef per SD of feature", "fully standardised"):
            table.add_column(column, justify="left" if column == "feature" else "right")
        for name, row in model.standardized_.items():
            table.add_row(name, f"{row['mean']:.6g}", f"{row['sd']:.6g}", f"{row['per_sd']:.6g}",
                          f"{row['standardized']:.6g}")
        show(table)
    say(f"wrote {out}")
    emit(model=out, **{k: v for k, v in model.to_dict().items() if k not in ("format", "version", "exact")},
         validation_curve=curve.to_dict() if curve is not None else None)


def print_model(model: hefed.LinearModel, true_factors: dict[str, float] | None = None,
                units: dict[str, str] | None = None) -> None:
    if not model.has_inference:
        title = "differentially private model" if model.dp_ else "n-weighted average model"
        table = Table(title=f"{model.target_}: {title}")
        table.add_column("term")
        table.add_column("coefficient", justify="right")
        for name, value in model.coefficients():
            table.add_row(name, f"{value:.6g}")
        show(table)
        show(f"n = {model.n_samples_}   factories: {', '.join(model.contributors_)}")
        return
    kind = f"ridge (alpha={model.ridge:g})" if model.ridge else "OLS"
    res = model.inference()
    table = Table(title=f"{model.target_} ~ {kind}: exact solution, rounded once to float64")
    for column in ("term", "coefficient", "std err", "95% confidence interval", "P>|t|"):
        table.add_column(column, justify="left" if column == "term" else "right")
    if units:
        table.add_column("unit")
    if true_factors:
        table.add_column("true factor", justify="right")
    ci = res.conf_int()
    for i, (name, value) in enumerate(model.coefficients()):
        low, high = ci[i]
        row = [name, f"{value:.6g}", _num(res.bse[i]), f"[{_num(low)}, {_num(high)}]", _num(res.pvalues[i], ".3g")]
        if units:
            row.append(units.get(name, ""))
        if true_factors:
            true = true_factors.get(name)
            row.append("" if true is None else f"{true:.4f}")
        table.add_row(*row)
    show(table)
    show(
        f"n = {model.n_samples_}   R² = {res.rsquared:.6f}   adj. R² = {_num(res.rsquared_adj)}   "
        f"F = {_num(res.fvalue)} (p = {_num(res.f_pvalue, '.3g')})   resid. std. err. = {_num(res.resid_std_err)}   "
        f"AIC = {_num(res.aic)}   BIC = {_num(res.bic)}   cond. no. = {res.condition_number:.3g}"
    )
    show(f"factories: {', '.join(model.contributors_)}")


def _num(value: float, fmt: str = ".4g") -> str:
    return "n/a" if value != value else format(value, fmt)


def print_metrics(title: str, metrics: dict[str, float]) -> None:
    table = Table(title=title)
    for name in ("n", "mse", "rmse", "mae", "r2"):
        table.add_column(name.upper() if name != "r2" else "R²", justify="right")
    table.add_row(str(metrics["n"]), *(f"{metrics[k]:.6g}" for k in ("mse", "rmse", "mae", "r2")))
    show(table)


@main.command()
@output_options
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path), help="Model JSON.")
@click.option("--target", default=None, help="Response column (default: the model's target).")
@click.option("--public-key", "public_key_path", type=click.Path(path_type=Path), default=None,
              help="With --factory-id and --out: also write an encrypted evaluation bundle.")
@click.option("--factory-id", default=None)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Evaluation bundle to write.")
@click.option("--frac-bits", default=Encoding.frac_bits, show_default=True, type=int,
              help="Encoding: binary digits below the point (same for every factory).")
@click.option("--int-bits", default=Encoding.int_bits, show_default=True, type=int,
              help="Encoding: values must be below 2^INT_BITS in magnitude (same for every factory).")
@encryption_option
@force_option
def evaluate(data: Path, model_path: Path, target: str | None, public_key_path: Path | None,
             factory_id: str | None, out: Path | None, frac_bits: int, int_bits: int, encryption: str,
             force: bool) -> None:
    """Factory: metrics of a model on DATA (its holdout); optionally an encrypted evaluation bundle."""
    encrypted = [public_key_path, factory_id, out]
    if any(v is not None for v in encrypted) and not all(v is not None for v in encrypted):
        raise UsageError("an encrypted evaluation needs all of --public-key, --factory-id and --out")
    if out is not None:
        check_writable(out, force)
    model = hefed.LinearModel.load(model_path)
    encoding = Encoding(frac_bits=frac_bits, int_bits=int_bits)
    metrics = evaluate_local(model, data, target, encoding).metrics()
    print_metrics(f"local metrics of the model on {data} (stay here)", metrics)
    if out is not None and public_key_path is not None and factory_id is not None:
        bundle = encrypt_evaluation(model, data, target, hefed.load_public_key(public_key_path), factory_id,
                                    encoding, encryption)  # type: ignore[arg-type]
        bundle.save(out, force=force)
        say(f"wrote {out}: encrypted evaluation bundle ({len(bundle.ciphertexts)} ciphertexts)")
    emit(metrics=metrics, evaluation_bundle=out)


def print_comparison(report: Comparison) -> None:
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
    show(
        f"largest coefficient difference federated vs centralised: {report.max_abs_coef_diff:.3g} "
        f"(relative {report.max_rel_coef_diff:.2e}); centralised = scikit-learn on pooled plaintext, "
        "possible only in a simulation"
    )
    enc = report.encrypted_overall
    show(
        f"federated overall from encrypted evaluation bundles: MSE {enc['mse']:.6g}, RMSE {enc['rmse']:.6g}, "
        f"MAE {enc['mae']:.6g}, R² {enc['r2']:.4f}"
    )
    for name, dropped in report.dropped_local.items():
        show(f"  {name}: local model drops {', '.join(dropped)} (constant or collinear there)")


@main.command()
@output_options
@consortium_options
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--ridge", default=0.0, show_default=True, type=float)
@click.option("--bits", default=2048, show_default=True, type=int, help="Key size of the simulation.")
def compare(data_paths: tuple[Path, ...], more_data: tuple[Path, ...], target: str | None, features: str | None,
            test_fraction: float, seed: int, ridge: float, bits: int) -> None:
    """Simulation: local-only vs federated vs centralised vs fine-tuned models on each factory's holdout."""
    factories, target = load_consortium([*data_paths, *more_data], target)
    report = compare_models(factories, target, split_names(features), test_fraction, seed, ridge, key_bits=bits)
    print_comparison(report)
    emit(**comparison_dict(report))


def comparison_dict(report: Comparison) -> dict[str, object]:
    return {"target": report.target, "features": report.features, "rows": report.rows, "overall": report.overall,
            "max_abs_coef_diff": report.max_abs_coef_diff, "max_rel_coef_diff": report.max_rel_coef_diff,
            "encrypted_overall": report.encrypted_overall, "dropped_local": report.dropped_local}


@main.command()
@output_options
@click.option("--factories", default=5, show_default=True, type=click.IntRange(3, 1000))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--bits", default=DEFAULT_BITS, show_default=True, type=int)
@click.option("--insecure-test-key", is_flag=True, help="Allow keys below 2048 bits, for quick trials only.")
def demo(factories: int, seed: int, bits: int, insecure_test_key: bool) -> None:
    """Run keygen → encrypt → aggregate → decrypt → solve on the built-in data."""
    from hefed.datasets import EMISSION_FACTORS, FACTOR_UNITS
    from hefed.sim import run_demo

    show(f"[bold]hefed demo[/bold]: {factories} synthetic plants, {bits}-bit Paillier key")
    report = run_demo(n_factories=factories, seed=seed, bits=bits, insecure_test_key=insecure_test_key)
    plants = Table(title="consortium (each plant's data stays on site)")
    plants.add_column("factory")
    plants.add_column("daily records", justify="right")
    for name, rows in report.factory_rows.items():
        plants.add_row(name, str(rows))
    show(plants)
    print_model(report.model, EMISSION_FACTORS, FACTOR_UNITS)
    show(
        f"federated vs centralised fit on the pooled plaintext (scikit-learn): largest relative "
        f"coefficient difference {report.max_rel_diff_centralised:.2e}"
    )
    show(
        "federated vs exact solve of the pooled plaintext: "
        + ("identical, rational for rational" if report.equals_exact_pooled else "[red]DIFFERENT[/red]")
    )
    if report.comparison is not None:
        print_comparison(report.comparison)
    steps = Table(title=f"time per step (bundle size {report.bundle_bytes} bytes per factory)")
    steps.add_column("step")
    steps.add_column("seconds", justify="right")
    for step, seconds in report.timings:
        steps.add_row(step, f"{seconds:.3f}")
    steps.add_row("total", f"{sum(s for _, s in report.timings):.3f}")
    show(steps)
    emit(model={k: v for k, v in report.model.to_dict().items() if k not in ("format", "version", "exact")},
         equals_exact_pooled=report.equals_exact_pooled, max_rel_diff_centralised=report.max_rel_diff_centralised,
         timings=dict(report.timings), bundle_bytes=report.bundle_bytes,
         comparison=comparison_dict(report.comparison) if report.comparison else None)
    if not report.equals_exact_pooled:
        sys.exit(1)


main.add_command(finetune)
main.add_command(simulate)
main.add_command(federate)

if __name__ == "__main__":
    main()
