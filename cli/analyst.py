"""Analyst command: ``solve`` releases the model from decrypted sums (anyone given them can run it)."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from .options import check_together, force_option, parse_floats
from .output import output_options


@click.command()
@output_options
@click.argument("sums", type=click.Path(path_type=Path))
@click.option("--ridge", default="0", show_default=True,
              help="Ridge penalty (intercept unpenalised), or 'auto' to choose it by exact cross-validation "
              "from fold statistics (hefed encrypt --folds K).")
@click.option("--alphas", default=None,
              help="Comma-separated candidate penalties for --ridge auto (default 0.001,0.01,...,1e6).")
@click.option("--no-intercept", is_flag=True, help="Fit a model through the origin.")
@click.option("--dp-epsilon", type=float, default=None,
              help="Release an (epsilon, delta)-differentially private model: exact discrete Gaussian noise on the "
              "statistics, everything released computed from the noised ones (needs --dp-delta, and --study with "
              "bounds or --bounds).")
@click.option("--dp-delta", type=float, default=None, help="The delta of the differentially private release.")
@click.option("--bounds", "bounds_path", type=click.Path(path_type=Path), default=None,
              help="Without a study: the bounds file every factory clipped to (hefed encrypt --bounds), taken on "
              "trust. With --study the study's bounds are used; a file that differs is refused.")
@click.option("--standardize", is_flag=True,
              help="Also report coefficients per standard deviation of each feature and fully standardised.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Model JSON to write (without it the model is only printed).")
@click.option("--release-key", "release_key_path", type=click.Path(path_type=Path), default=None,
              help="Sign the model with the key holder's release key (keyholder.key.json), for readers to check.")
@click.option("--study", "study_path", type=click.Path(path_type=Path), default=None,
              help="The consortium's study: refuse sums not made for it; its DP bounds are the ones clipped to.")
@click.option("--exact", is_flag=True,
              help="Also write the exact rational solution into the model file (larger; computing it takes exact "
              "solves: seconds at 100 features).")
@click.option("--robust", "robust_path", type=click.Path(path_type=Path), default=None,
              help="Decrypted residual moments of the model released from these sums (the second round: hefed "
              "encrypt --kind residual_moments --model MODEL): report robust standard errors.")
@click.option("--cov-type", default=None,
              type=click.Choice(["HC0", "HC1", "HC2", "HC3", "cluster", "HAC"], case_sensitive=False),
              help="The robust covariance (statsmodels' cov_type; needs --robust): HC0/HC1 from HC0/HC1 moments, "
              "HC2, HC3, cluster (by plant) and HAC from their own. Default with --robust: what the moments allow "
              "(HC1 for HC0/HC1 moments).")
@force_option
def solve(sums: Path, ridge: str, alphas: str | None, no_intercept: bool, dp_epsilon: float | None,
          dp_delta: float | None, bounds_path: Path | None, standardize: bool, out: Path | None,
          study_path: Path | None, release_key_path: Path | None, exact: bool, robust_path: Path | None,
          cov_type: str | None, force: bool) -> None:
    """Analyst: the exact global model from decrypted sums (every number certified correctly rounded).

    Reads what hefed decrypt wrote. Statistics give the pooled OLS or ridge model with its inference; fold
    statistics allow --ridge auto; a coefficient aggregate gives the n-weighted average model.
    """
    from hefed._files import check_writable
    from hefed.data import Bounds
    from hefed.errors import FewClustersWarning, PrivacyNoiseWarning, UsageError
    from hefed.protocol import Study, load_release_key
    from hefed.roles import DifferentialPrivacy, load_sums, release_model

    from .render import render_release

    if out is not None:
        check_writable(out, force)
    study = Study.load(study_path) if study_path is not None else None
    # DP bounds: the study's (a --bounds that differs is refused by the library), else a bounds file taken on trust
    bounds = Bounds.load(bounds_path) if bounds_path is not None else None
    asked = dp_epsilon is not None or dp_delta is not None or bounds_path is not None
    private = asked and check_together({"--dp-epsilon": dp_epsilon, "--dp-delta": dp_delta,
                                        "--bounds (or --study)": bounds if study is None else study},
                                       "a differentially private release")
    privacy = (DifferentialPrivacy(dp_epsilon, dp_delta, bounds)
               if private and dp_epsilon is not None and dp_delta is not None else None)
    warnings.filterwarnings("ignore", category=PrivacyNoiseWarning)  # render_release prints them from the accounting
    robust = load_sums(robust_path, expected=("residual_moments",)) if robust_path is not None else None
    if cov_type is not None and robust is None:
        raise UsageError("--cov-type needs --robust (the decrypted residual moments of the released model)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FewClustersWarning)
        release = release_model(load_sums(sums), ridge, parse_floats(alphas, "--alphas"), not no_intercept,
                                standardize, privacy, study,
                                load_release_key(release_key_path) if release_key_path is not None else None,
                                exact=exact, robust=robust,
                                cov_type=cov_type or (robust.default_cov_type if robust is not None else None))
    release.notes.extend(str(w.message) for w in caught if issubclass(w.category, FewClustersWarning))
    if out is not None:
        release.model.save(out, force=force)
    render_release(release, out)
