"""Factory commands: ``enroll``, ``encrypt``, ``evaluate``, ``finetune``. A factory's rows never leave it:
these commands read its table and write ciphertexts (or, for ``evaluate`` and ``finetune``, local results)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import click
from click.core import ParameterSource

from .options import (
    check_together,
    encoding_options,
    encryption_option,
    file_format,
    file_format_options,
    force_option,
    insecure_test_key_option,
    parse_floats,
    split_names,
)
from .output import output_options

if TYPE_CHECKING:
    from hefed.primitives.encryption import Encryption


@click.command()
@output_options
@click.option("--factory-id", required=True, help="This factory's id (letters, digits, . _ -).")
@click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for identity.key.json (mode 0600) and identity.pub.json.")
@force_option
def enroll(factory_id: str, out_dir: Path, force: bool) -> None:
    """Factory: make signing and key-agreement keys for masked rounds.

    Ed25519 (signing) and X25519 (pairwise masks) keys. Give identity.pub.json to the consortium (hefed roster add);
    keep identity.key.json.
    """
    from hefed.protocol import enroll as enroll_factory

    from .render import render_identity

    private_path, public_path = enroll_factory(factory_id, out_dir, force)
    render_identity(factory_id, public_path, private_path)


def _request(mode: str, summary: bool, options: dict[str, Any], given: set[str]) -> Any:
    """The kind request ``--mode`` names (``--summary``: a summary; ``--folds K``: the statistics of K folds),
    its fields filled from the options of the same name (:meth:`hefed.kinds.Kind.request_from`)."""
    from hefed.errors import UsageError
    from hefed.kinds import FOLD_STATISTICS, STATISTICS, SUMMARY, get_kind, kind_names

    if mode not in kind_names():
        raise UsageError(f"--mode {mode!r} is not a bundle kind; choose one of {', '.join(kind_names())}")
    kind = SUMMARY if summary else get_kind(mode)
    if options["folds"] and kind is STATISTICS:
        kind = FOLD_STATISTICS
    try:
        return kind.request_from({name: value for name, value in options.items() if name in given or name == "seed"},
                                 given)
    except UsageError as exc:
        if set(exc.parameters) <= set(options):
            raise  # an option of this command: the message points at it
        raise UsageError(f"hefed encrypt cannot make {kind.name} bundles ({exc})") from None


@click.command()
@output_options
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--study", "study_path", default=None, type=click.Path(path_type=Path),
              help="The consortium's study (hefed study new): target, features, key, encoding and policies come "
              "from it; an option that contradicts it is refused.")
@click.option("--target", default=None, help="Response column, e.g. co2_t (required without --study).")
@click.option("--features", default=None,
              help="Comma-separated feature columns (default: every numeric column but the target).")
@click.option("--public-key", "public_key_path", default=None, type=click.Path(path_type=Path),
              help="The consortium's public key (hefed keygen; required without --study).")
@click.option("--factory-id", required=True, help="This factory's id (letters, digits, . _ -).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle file to write.")
@click.option("--mode", "--kind", "mode", default="statistics", show_default=True, metavar="KIND",
              help="The bundle kind to compute. statistics: exact sufficient statistics (the pooled model); "
              "coefficients: this factory's own fitted model weighted by n (encrypted FedAvg); summary: per-column "
              "count, mean and std round; fold_statistics: statistics per fold (same as --folds).")
@click.option("--summary", "summary_flag", is_flag=True, help="Same as --mode summary.")
@click.option("--cov-type", default=None, help="residual_moments without a study: the robust covariance the moments "
              "are for (HC0, HC1, HC2, HC3, cluster, HAC; default HC1). A study fixes it.")
@click.option("--maxlags", default=None, type=int, help="residual_moments for HAC without a study: the lags.")
@click.option("--fixed-effects", "fixed_effects", is_flag=True,
              help="Same as --mode within_statistics: this plant's rows demeaned, for a model with plant fixed "
              "effects (no plant's own count or means is in the sum).")
@click.option("--weights", "weights", default=None, metavar="COLUMN",
              help="Same as --mode weighted_statistics weighted by COLUMN: precision weights (>= 0) for weighted least "
              "squares, as statsmodels WLS(y, X, weights=COLUMN); a study fixes the column.")
@click.option("--ridge", default=0.0, show_default=True, type=float,
              help="Ridge penalty of the local fit (coefficients mode only).")
@click.option("--model", "model_path", default=None, type=click.Path(path_type=Path),
              help="The published model a kind measures (--mode audit: its predictions against DATA's reference "
              "measurements in the target column; --mode evaluation: its residuals; --mode residual_moments: the "
              "meat of its robust covariance, signed by the key holder in a study).")
@click.option("--folds", default=0, show_default=True, type=int,
              help="Also encrypt the statistics of K cross-validation folds (for solve --ridge auto).")
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
@encoding_options()
@file_format_options
@click.option("--round", "round_path", type=click.Path(path_type=Path), default=None,
              help="Masked, signed round: its round keys (hefed round start; a version 1 round file also works); "
              "needs --identity and --roster.")
@click.option("--identity", "identity_path", type=click.Path(path_type=Path), default=None,
              help="This factory's enrollment folder (hefed enroll), for --round.")
@click.option("--roster", "roster_path", type=click.Path(path_type=Path), default=None,
              help="Consortium roster (hefed roster add), for --round.")
@click.option("--bounds", "bounds_path", type=click.Path(path_type=Path), default=None,
              help="Declared per-column bounds: clip values to them (for a differentially private release).")
@encryption_option
@insecure_test_key_option
@force_option
@click.pass_context
def encrypt(ctx: click.Context, data: Path, study_path: Path | None, target: str | None, features: str | None,
            public_key_path: Path | None,
            factory_id: str, out: Path, mode: str, summary_flag: bool, cov_type: str | None, maxlags: int | None,
            fixed_effects: bool, ridge: float, model_path: Path | None, folds: int,
            summary_file: Path | None, impute: Literal["mean"] | None, missing: Literal["drop", "error"],
            max_z: float | None, test_fraction: float, seed: int, holdout_out: Path | None, frac_bits: int,
            int_bits: int, max_contributors: int, delimiter: str | None, decimal: str | None,
            file_encoding: str | None, sheet: str | None, round_path: Path | None, identity_path: Path | None,
            roster_path: Path | None, bounds_path: Path | None, encryption: Encryption, insecure_test_key: bool,
            force: bool, weights: str | None = None) -> None:
    """Factory: encrypt exact statistics of its table (CSV, TSV, .xlsx or Parquet).

    Computes the --mode kind's exact sums of DATA and encrypts them. The bundle holds ciphertexts and public
    metadata only. With --round, --identity and --roster it is masked and signed for that round: only the sum over
    all the round's participants can be decrypted.
    """
    import hefed
    from hefed._files import check_writable
    from hefed.data import Bounds, Cleaning, Holdout, write_table
    from hefed.errors import UsageError
    from hefed.protocol import Masking, Study, load_identity, load_round_inputs
    from hefed.stats import ColumnSummary, Encoding

    from .render import render_encrypt

    check_writable(out, force)
    if holdout_out is not None:
        if not test_fraction:
            raise UsageError("--holdout-out needs --test-fraction")
        check_writable(holdout_out, force)
    explicit = {name for name in ctx.params if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT}
    if fixed_effects:
        mode = "within_statistics"
        explicit = (explicit - {"fixed_effects"}) | {"mode"}
    mode = mode.replace("-", "_")
    if mode == "glm_round":  # one IRLS round at the key holder's signed coefficients (the same as hefed glm encrypt)
        from hefed.roles._glm import encrypt_glm_round_file

        if study_path is None or model_path is None:
            raise UsageError("--kind glm_round needs --study and --model (the round's coefficients, signed by the "
                             "study's key holder)")
        glm = encrypt_glm_round_file(data, study_path, model_path, out, factory_id=factory_id,
                                     log=out.resolve().parent / "glm-log.json", force=force)
        click.echo(f"{factory_id}: round {glm.bundle.parameters['iteration']} of the GLM fit encrypted -> {out}")
        return
    # an option set to its default asks for nothing (scripts pass the same options to every mode)
    given: set[str] = {name for name in ("ridge", "folds") if name in explicit and ctx.params[name] != 0}
    given |= {name for name in ("cov_type", "maxlags") if ctx.params[name] is not None}
    model = hefed.LinearModel.load(model_path) if model_path is not None else None
    if model is not None:
        given.add("model")
    options = {"ridge": ridge, "folds": folds, "seed": seed, "model": model, "cov_type": cov_type, "maxlags": maxlags}
    masked = check_together({"--round": round_path, "--identity": identity_path, "--roster": roster_path},
                            "a masked round")
    roster, round_ = load_round_inputs(roster_path, round_path)
    masking = (Masking(round_, load_identity(identity_path), roster)
               if masked and round_ is not None and roster is not None and identity_path is not None else None)
    summary = ColumnSummary.load(summary_file) if summary_file is not None else None
    if weights is None and mode == "weighted_statistics" and study_path is not None:  # the study's column
        weights = Study.load(study_path).kinds.get(mode, {}).get("weights")
    if weights is not None:  # --weights COLUMN: the weighted statistics (WLS) of the rows, weighted by COLUMN
        from hefed.kinds import STATISTICS, WEIGHTED_STATISTICS

        if "mode" in explicit and mode not in (STATISTICS.name, WEIGHTED_STATISTICS.name):
            raise UsageError(f"--weights makes weighted_statistics bundles, not {mode}")
        mode, explicit = "weighted_statistics", explicit | {"mode"}
        options["weights"] = weights
        given.add("weights")
    if study_path is None and (target is None or public_key_path is None):
        raise UsageError("give --target and --public-key, or a --study that names them")
    if study_path is not None:
        study = Study.load(study_path)
        if "bounds_path" in explicit:
            raise UsageError("--bounds: a study's DP bounds are in the study (hefed study new --bounds)")
        wanted = {"mode", "summary_flag", "ridge", "folds", "model_path"} & explicit
        if {"cov_type", "maxlags"} & explicit:
            raise UsageError("--cov-type, --maxlags: the study fixes them (hefed study new --cov-type, --maxlags)")
        holdout = None  # not given: the study's
        if {"test_fraction", "seed"} & explicit:  # either given: the holdout they make is compared with the study's
            agreed = study.holdout
            fraction = test_fraction if "test_fraction" in explicit else agreed.test_fraction if agreed else 0.0
            if fraction:
                holdout = Holdout(fraction, seed if "seed" in explicit else agreed.seed if agreed else 0)
            elif agreed is not None:
                raise UsageError(f"--test-fraction 0 contradicts the study's holdout (test fraction "
                                 f"{agreed.test_fraction}, seed {agreed.seed})")
            elif "seed" in explicit and "folds" not in explicit:
                raise UsageError(f"--seed {seed} contradicts the study, which keeps no holdout")
        result = hefed.encrypt_table(
            data, target, hefed.load_public_key(public_key_path, insecure_test_key=insecure_test_key)
            if public_key_path is not None else None,
            features=split_names(features), factory_id=factory_id, study=study, summary=summary,
            insecure_test_key=insecure_test_key,
            request=_request(mode, summary_flag, options, given)
            if wanted else None,
            encoding=_given_encoding(study.encoding, explicit, frac_bits, int_bits, max_contributors),
            cleaning=(Cleaning(missing=missing if "missing" in explicit else study.cleaning.missing,
                               impute=impute if "impute" in explicit else study.cleaning.impute,
                               max_z=max_z if "max_z" in explicit else study.cleaning.max_z, summary=summary)
                      if {"missing", "impute", "max_z"} & explicit else None),
            holdout=holdout,
            masking=masking, encryption=encryption, file_format=file_format(delimiter, decimal, file_encoding, sheet),
        )
    else:
        request = _request(mode, summary_flag, options, given)
        assert target is not None and public_key_path is not None
        result = hefed.encrypt_table(
            data, target, hefed.load_public_key(public_key_path, insecure_test_key=insecure_test_key),
            features=split_names(features), factory_id=factory_id, request=request, insecure_test_key=insecure_test_key,
            encoding=Encoding(frac_bits=frac_bits, int_bits=int_bits, max_contributors=max_contributors),
            cleaning=Cleaning(missing=missing, impute=impute, max_z=max_z, summary=summary,
                              bounds=Bounds.load(bounds_path) if bounds_path is not None else None),
            holdout=Holdout(test_fraction, seed) if test_fraction else None,
            masking=masking, encryption=encryption, file_format=file_format(delimiter, decimal, file_encoding, sheet),
        )
    result.bundle.save(out, force=force)
    if holdout_out is not None and result.holdout is not None:
        write_table(result.holdout, holdout_out, force=force)
    render_encrypt(result, out, holdout_out, seed)


@click.command()
@output_options
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path),
              help="The global model JSON (hefed solve --out).")
@click.option("--target", default=None, help="Response column (default: the model's target).")
@click.option("--public-key", "public_key_path", type=click.Path(path_type=Path), default=None,
              help="With --factory-id and --out: also write an encrypted evaluation bundle.")
@click.option("--factory-id", default=None, help="This factory's id, for the encrypted evaluation bundle.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Encrypted evaluation bundle to write (aggregate and decrypt it like any bundle).")
@click.option("--study", "study_path", type=click.Path(path_type=Path), default=None,
              help="The consortium's study: key, target and encoding come from it (then no --public-key).")
@encoding_options(contributors=False)
@encryption_option
@insecure_test_key_option
@force_option
def evaluate(data: Path, model_path: Path, target: str | None, public_key_path: Path | None,
             factory_id: str | None, out: Path | None, study_path: Path | None, frac_bits: int, int_bits: int,
             encryption: Encryption, insecure_test_key: bool, force: bool) -> None:
    """Factory: a model's metrics on its own holdout rows.

    Prints MSE, RMSE, MAE and R² of the model on DATA; with --public-key, --factory-id and --out also writes an
    encrypted evaluation bundle. The local metrics stay at the factory; the bundle lets the consortium learn its
    pooled metrics only.
    """
    import hefed
    from hefed._files import check_writable
    from hefed.errors import UsageError
    from hefed.kinds import EvaluationRequest
    from hefed.protocol import Study
    from hefed.roles import encrypt_evaluation, encrypt_table, evaluate_local
    from hefed.stats import Encoding

    from .render import render_evaluation_bundle, render_metrics

    study = Study.load(study_path) if study_path is not None else None
    if study is not None and public_key_path is not None:
        raise UsageError("--public-key: the study carries the key; leave --public-key out")
    key_source = "--study" if study is not None else "--public-key"
    encrypted = check_together({key_source: study_path if study is not None else public_key_path,
                                "--factory-id": factory_id, "--out": out}, "an encrypted evaluation")
    if out is not None:
        check_writable(out, force)
    model = hefed.LinearModel.load(model_path)
    encoding = study.encoding if study is not None else Encoding(frac_bits=frac_bits, int_bits=int_bits)
    target = target or (study.target.name if study is not None else None)
    metrics = evaluate_local(model, data, target, encoding, study=study).metrics()
    if encrypted and out is not None and factory_id is not None and study is not None:
        bundle = encrypt_table(data, target, factory_id=factory_id, study=study, request=EvaluationRequest(model),
                               encryption=encryption, insecure_test_key=insecure_test_key).bundle
        bundle.save(out, force=force)
        render_evaluation_bundle(bundle, out)
    elif encrypted and out is not None and public_key_path is not None and factory_id is not None:
        bundle = encrypt_evaluation(model, data, target,
                                    hefed.load_public_key(public_key_path, insecure_test_key=insecure_test_key),
                                    factory_id,
                                    encoding, encryption)
        bundle.save(out, force=force)
        render_evaluation_bundle(bundle, out)
    render_metrics(f"local metrics of the model on {data} (stay here)", metrics, evaluation_bundle=out)


@click.command()
@output_options
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--model", "model_path", required=True, type=click.Path(path_type=Path),
              help="The global model JSON to start from.")
@click.option("--target", default=None, help="Response column (default: the model's target).")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Fine-tuned model JSON to write (refitted on all rows of DATA with the chosen λ).")
@click.option("--lambdas", default=None,
              help="Comma-separated λ grid (default: s·10^k, k = -12…4, s = mean diagonal of the local Gram "
              "of [1, X]).")
@click.option("--folds", default=5, show_default=True, type=int, help="Folds of the local cross-validation.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the holdout draw and of the folds.")
@click.option("--test-fraction", default=0.25, show_default=True, type=float,
              help="Fraction of rows held out to compare the global and the fine-tuned model (0: none); the "
              "saved model is refitted on all rows afterwards.")
@click.option("--exact", is_flag=True, help="Also write the exact rational solution into the model file.")
@force_option
def finetune(data: Path, model_path: Path, target: str | None, out: Path, lambdas: str | None, folds: int,
             seed: int, test_fraction: float, exact: bool, force: bool) -> None:
    """Factory: adapt the global model to its own rows.

    Fits argmin ‖y − Xθ‖² + λ‖θ − θ_global‖² on DATA, λ chosen by exact local cross-validation. Nothing leaves the
    factory. The holdout measures the global and the fine-tuned model side by side; the model written to --out is
    then refitted on every row with the chosen λ.
    """
    from hefed._files import check_writable
    from hefed.analysis import finetune as finetune_model
    from hefed.models import LinearModel

    from .render import render_finetune

    check_writable(out, force)
    result = finetune_model(LinearModel.load(model_path), data, target, parse_floats(lambdas, "--lambdas"), folds,
                            seed, test_fraction)
    result.model.save(out, force=force, exact=exact)
    render_finetune(result, data, out)


def _given_encoding(agreed: Any, explicit: set[str], frac_bits: int, int_bits: int, max_contributors: int) -> Any:
    """The encoding the encoding options ask for next to a study (``None`` when none was given), so the library
    can refuse it when it contradicts the study's."""
    from hefed.stats import Encoding

    if not {"frac_bits", "int_bits", "max_contributors"} & explicit:
        return None
    return Encoding(frac_bits=frac_bits if "frac_bits" in explicit else agreed.frac_bits,
                    int_bits=int_bits if "int_bits" in explicit else agreed.int_bits,
                    max_contributors=max_contributors if "max_contributors" in explicit else agreed.max_contributors,
                    columns=agreed.columns)
