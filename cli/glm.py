"""``hefed glm``: a GLM fitted by encrypted IRLS rounds, with files (one command per role and round).

    hefed glm start --study study.json --release-key keys/keyholder.key.json --out beta.json --state fit.json
    # each round: every factory
    hefed glm encrypt plant.csv --study study.json --model beta.json --factory-id plant-a --out a.bundle.json
    hefed aggregate a.bundle.json b.bundle.json c.bundle.json --study study.json --out round.json
    hefed glm step round.json --private-key keys/private_key.json --study study.json --state fit.json --out beta.json
    # ... until `glm step` says the fit converged and wrote the results instead of coefficients
"""

from __future__ import annotations

from pathlib import Path

import click

from .options import force_option
from .output import output_options

_PATH = click.Path(path_type=Path)


@click.group("glm")
def glm() -> None:
    """GLMs (logistic, Poisson, Gamma) by encrypted IRLS: start, one encrypt per factory and round, one step."""


@glm.command("start")
@output_options
@click.option("--study", "study_path", required=True, type=_PATH, help="The study (it allows glm_round bundles).")
@click.option("--release-key", "release_key_path", required=True, type=_PATH,
              help="The key holder's release key (keyholder.key.json): it signs every iteration's coefficients.")
@click.option("--out", required=True, type=_PATH, help="The signed coefficients of iteration 0, for every factory.")
@click.option("--state", "state_path", required=True, type=_PATH, help="The key holder's fit state (mode 0600).")
@click.option("--max-iter", default=100, show_default=True, type=int, help="Most IRLS iterations.")
@click.option("--tol", default=1e-12, show_default=True, type=float,
              help="Converged when max |Δβ| / (|β| + 1e-8) ≤ tol.")
@click.option("--allow-insecure-permissions", is_flag=True, help="Load a release key readable by others.")
@force_option
def start(study_path: Path, release_key_path: Path, out: Path, state_path: Path, max_iter: int, tol: float,
          allow_insecure_permissions: bool, force: bool) -> None:
    """Key holder: start a fit (a random fit id, iteration 0 signed)."""
    from hefed.roles._glm import start_fit_files

    fit = start_fit_files(study_path, release_key_path, out, state_path, max_iter=max_iter, tol=tol, force=force,
                          allow_insecure_permissions=allow_insecure_permissions)
    click.echo(f"fit {fit.coefficients.fit_id}: {fit.coefficients.family} ({fit.coefficients.link}) iteration 0 "
               f"signed -> {out}")


@glm.command("encrypt")
@output_options
@click.argument("data", type=_PATH)
@click.option("--study", "study_path", required=True, type=_PATH, help="This factory's copy of the study.")
@click.option("--model", "model_path", required=True, type=_PATH,
              help="The round's coefficients, signed by the study's key holder (glm start / glm step --out).")
@click.option("--factory-id", required=True, help="This factory's id.")
@click.option("--log", "log_path", default=None, type=_PATH,
              help="This factory's record of the fits it took part in (default: glm-log.json beside --out).")
@click.option("--out", required=True, type=_PATH, help="The encrypted round bundle to write.")
@force_option
def encrypt(data: Path, study_path: Path, model_path: Path, factory_id: str, log_path: Path | None, out: Path,
            force: bool) -> None:
    """Factory: check the round's signed coefficients and encrypt this round's sums of DATA."""
    from hefed.roles._glm import encrypt_glm_round_file

    result = encrypt_glm_round_file(data, study_path, model_path, out, factory_id=factory_id,
                                    log=log_path or out.resolve().parent / "glm-log.json", force=force)
    click.echo(f"{factory_id}: round {result.bundle.parameters['iteration']} of the fit encrypted -> {out}")


@glm.command("step")
@output_options
@click.argument("aggregate_path", metavar="AGGREGATE", type=_PATH)
@click.option("--private-key", "private_key_path", required=True, type=_PATH, help="The consortium's private key.")
@click.option("--study", "study_path", required=True, type=_PATH, help="The study.")
@click.option("--state", "state_path", required=True, type=_PATH, help="The key holder's fit state (glm start).")
@click.option("--out", required=True, type=_PATH,
              help="The next signed coefficients, or, when the fit has converged, its results.")
@click.option("--release-key", "release_key_path", default=None, type=_PATH,
              help="The key holder's release key (default: keyholder.key.json beside the private key).")
@click.option("--roster", "roster_path", default=None, type=_PATH, help="The roster, for signed rounds.")
@click.option("--ledger", "ledger_path", default=None, type=_PATH,
              help="The decryption ledger (default: decryption-ledger.json beside the private key).")
@click.option("--allow-unsigned", is_flag=True, help="Decrypt an unsigned (plain) aggregate: trials only.")
@click.option("--allow-insecure-permissions", is_flag=True, help="Load keys readable by others.")
@force_option
def step(aggregate_path: Path, private_key_path: Path, study_path: Path, state_path: Path, out: Path,
         release_key_path: Path | None, roster_path: Path | None, ledger_path: Path | None, allow_unsigned: bool,
         allow_insecure_permissions: bool, force: bool) -> None:
    """Key holder: decrypt a round's sum, solve the next coefficients exactly and sign them (or the results)."""
    from hefed.roles._glm import step_files

    fit = step_files(aggregate_path, private_key_path, study_path, state_path, out, release_key=release_key_path,
                     roster=roster_path, ledger=ledger_path, allow_unsigned=allow_unsigned,
                     allow_insecure_permissions=allow_insecure_permissions, force=force)
    if fit.results is not None:
        r = fit.results
        click.echo(f"converged after {r.n_iter} iterations: deviance {r.deviance:.10g}, llf {r.llf:.10g}, "
                   f"aic {r.aic:.10g} -> {out}")
        for name, value, se in zip(r.param_names, r.params, r.bse, strict=True):
            click.echo(f"  {name:<20} {value: .10g}  (se {se:.4g})")
    else:
        change = fit.changes[-1] if fit.changes else float("nan")
        click.echo(f"iteration {fit.coefficients.iteration} signed ({fit.coefficients.stage}; relative change "
                   f"{change:.3g}) -> {out}")
