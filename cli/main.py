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
from rich.console import Console
from rich.table import Table

import hefed
from hefed.encoding import Encoding
from hefed.errors import HefedError
from hefed.fileio import check_writable
from hefed.keys import DEFAULT_BITS

console = Console()


class HefedGroup(click.Group):
    """Turns library errors into one-line messages and exit codes."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except HefedError as exc:
            if ctx.meta.get("hefed.debug"):
                raise
            click.echo(f"hefed: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("hefed: interrupted", err=True)
            ctx.exit(130)
        except (OSError, MemoryError) as exc:
            if ctx.meta.get("hefed.debug"):
                raise
            click.echo(f"hefed: error: {exc}", err=True)
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
@click.option("--out-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for public_key.json and private_key.json (created if missing).")
@click.option("--bits", default=DEFAULT_BITS, show_default=True, type=int,
              help="Size of the modulus n in bits (2048 or more).")
@click.option("--insecure-test-key", is_flag=True, help="Allow keys below 2048 bits, for tests only.")
@force_option
def keygen(out_dir: Path, bits: int, insecure_test_key: bool, force: bool) -> None:
    """Key holder: make a Paillier key pair (pheutil JSON format)."""
    public_path, private_path = out_dir / "public_key.json", out_dir / "private_key.json"
    for path in (public_path, private_path):
        check_writable(path, force)
    public_key, private_key = hefed.generate_keypair(bits, insecure_test_key=insecure_test_key)
    out_dir.mkdir(parents=True, exist_ok=True)
    hefed.save_private_key(private_key, private_path, force=force)
    hefed.save_public_key(public_key, public_path, force=force)
    click.echo(f"wrote {public_path} (publish it) and {private_path} (mode 0600, keep it secret)")
    click.echo(f"key fingerprint {hefed.key_fingerprint(public_key)}, {bits} bits")


@main.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--target", required=True, help="Response column, e.g. co2_t.")
@click.option("--features", default=None,
              help="Comma-separated feature columns (default: every numeric column but the target).")
@click.option("--public-key", "public_key_path", required=True, type=click.Path(path_type=Path))
@click.option("--factory-id", required=True, help="This factory's id (letters, digits, . _ -).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Bundle file to write.")
@click.option("--frac-bits", default=Encoding.frac_bits, show_default=True, type=int,
              help="Encoding: binary digits below the point (same for every factory).")
@click.option("--int-bits", default=Encoding.int_bits, show_default=True, type=int,
              help="Encoding: values must be below 2^INT_BITS in magnitude (same for every factory).")
@click.option("--max-contributors", default=Encoding.max_contributors, show_default=True, type=int,
              help="Encoding: most factories an aggregate may sum (same for every factory).")
@force_option
def encrypt(data: Path, target: str, features: str | None, public_key_path: Path, factory_id: str,
            out: Path, frac_bits: int, int_bits: int, max_contributors: int, force: bool) -> None:
    """Factory: compute exact statistics of DATA (CSV or Parquet) and encrypt them."""
    check_writable(out, force)
    feature_list = [f.strip() for f in features.split(",") if f.strip()] if features else None
    encoding = Encoding(frac_bits=frac_bits, int_bits=int_bits, max_contributors=max_contributors)
    public_key = hefed.load_public_key(public_key_path)
    bundle = hefed.encrypt_statistics(data, target, public_key, feature_list, factory_id, encoding)
    bundle.save(out, force=force)
    click.echo(
        f"wrote {out}: {len(bundle.ciphertexts)} ciphertexts, target {target!r}, "
        f"{len(bundle.features)} features ({', '.join(bundle.features)})"
    )


@main.command(name="aggregate")
@click.argument("bundles", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Aggregate bundle to write.")
@force_option
def aggregate_cmd(bundles: tuple[Path, ...], out: Path, force: bool) -> None:
    """Aggregator: add encrypted bundles without any private key."""
    check_writable(out, force)
    result = hefed.aggregate(bundles)
    result.save(out, force=force)
    click.echo(f"wrote {out}: aggregate of {len(result.contributors)} factories ({', '.join(result.contributors)})")


@main.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--private-key", "private_key_path", required=True, type=click.Path(path_type=Path))
@click.option("--min-contributors", default=3, show_default=True, type=int,
              help="Refuse aggregates of fewer factories (disclosure threshold).")
@click.option("--allow-insecure-permissions", is_flag=True, help="Load a private key readable by others.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Statistics file to write.")
@force_option
def decrypt(bundle: Path, private_key_path: Path, min_contributors: int,
            allow_insecure_permissions: bool, out: Path, force: bool) -> None:
    """Key holder: decrypt an aggregate bundle into plaintext aggregate statistics."""
    check_writable(out, force)
    private_key = hefed.load_private_key(private_key_path, allow_insecure_permissions)
    stats = hefed.decrypt_statistics(hefed.Bundle.load(bundle), private_key, min_contributors)
    stats.save(out, force=force)
    click.echo(f"wrote {out}: statistics of {stats.n} rows from {len(stats.contributors)} factories")


@main.command(name="solve")
@click.argument("stats", type=click.Path(path_type=Path))
@click.option("--ridge", default=0.0, show_default=True, type=float, help="Ridge penalty (intercept unpenalised).")
@click.option("--no-intercept", is_flag=True, help="Fit a model through the origin.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Model JSON to write.")
@force_option
def solve_cmd(stats: Path, ridge: float, no_intercept: bool, out: Path, force: bool) -> None:
    """Solve the exact global linear model from decrypted aggregate statistics."""
    check_writable(out, force)
    model = hefed.solve(hefed.SufficientStatistics.load(stats), ridge=ridge, fit_intercept=not no_intercept)
    model.save(out, force=force)
    print_model(model)
    click.echo(f"wrote {out}")


def print_model(model: hefed.LinearModel, true_factors: dict[str, float] | None = None,
                units: dict[str, str] | None = None) -> None:
    kind = f"ridge (alpha={model.ridge:g})" if model.ridge else "OLS"
    table = Table(title=f"{model.target_} ~ {kind}, exact solution rounded once to float64")
    table.add_column("term")
    table.add_column("coefficient", justify="right")
    if units:
        table.add_column("unit")
    if true_factors:
        table.add_column("true factor", justify="right")
    for name, value in model.coefficients():
        row = [name, f"{value:.10g}"]
        if units:
            row.append(units.get(name, ""))
        if true_factors:
            true = true_factors.get(name)
            row.append("" if true is None else f"{true:.4f}")
        table.add_row(*row)
    console.print(table)
    console.print(f"n = {model.n_samples_}   R² = {model.r2_:.6f}   RMSE = {model.rmse_:.6g}   "
                  f"factories: {', '.join(model.contributors_)}")


@main.command()
@click.option("--factories", default=5, show_default=True, type=click.IntRange(3, 1000))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--bits", default=DEFAULT_BITS, show_default=True, type=int)
def demo(factories: int, seed: int, bits: int) -> None:
    """Run keygen → encrypt → aggregate → decrypt → solve on the built-in data."""
    from hefed.datasets import EMISSION_FACTORS, FACTOR_UNITS
    from hefed.demo import run_demo

    console.print(f"[bold]hefed demo[/bold]: {factories} synthetic plants, {bits}-bit Paillier key")
    report = run_demo(n_factories=factories, seed=seed, bits=bits)
    plants = Table(title="consortium (each plant's data stays on site)")
    plants.add_column("factory")
    plants.add_column("daily records", justify="right")
    for name, rows in report.factory_rows.items():
        plants.add_row(name, str(rows))
    console.print(plants)
    print_model(report.model, EMISSION_FACTORS, FACTOR_UNITS)
    console.print(
        f"federated vs centralised fit on the pooled plaintext (scikit-learn): largest relative "
        f"coefficient difference {report.max_rel_diff_centralised:.2e}"
    )
    console.print(
        "federated vs exact solve of the pooled plaintext: "
        + ("identical, rational for rational" if report.equals_exact_pooled else "[red]DIFFERENT[/red]")
    )
    steps = Table(title=f"time per step (bundle size {report.bundle_bytes} bytes per factory)")
    steps.add_column("step")
    steps.add_column("seconds", justify="right")
    for step, seconds in report.timings:
        steps.add_row(step, f"{seconds:.3f}")
    steps.add_row("total", f"{sum(s for _, s in report.timings):.3f}")
    console.print(steps)
    if not report.equals_exact_pooled:
        sys.exit(1)


if __name__ == "__main__":
    main()
