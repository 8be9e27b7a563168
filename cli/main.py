"""The ``hefed`` command line: one command per step of the protocol, each a thin layer over the library.

A command parses its options, calls one library function and hands the result to its renderer. The
modules are laid out by role:

* ``keyholder`` — keygen, decrypt;  ``factory`` — enroll, encrypt, evaluate, finetune;  ``check`` — does a
  factory's table fit the study (before encrypting);
* ``consortium`` — roster, study (the agreement every party pins), round (masked rounds);
* ``aggregator`` — aggregate;  ``analyst`` — solve;  ``predict`` — predictions with intervals, annual totals;
* ``monitor`` — monitor, whatif, audit (a plant's own use of the model), consortium-audit;  ``report`` — the HTML
  report;
* ``simulations`` — demo, compare, simulate;  ``federate`` — a one-machine Flower trial;
* ``render`` — one renderer per result type (text, tables, ``--json``);  ``output`` — ``--json``/``--quiet``
  and the mapping of library errors to exit codes;  ``options`` — options shared by several commands.

Library errors (:class:`hefed.errors.HefedError`) are printed as one line on stderr with exit code 1
(bad data, refused operation) or 2 (bad usage); ``hefed --debug COMMAND`` shows the traceback instead.

Start-up: the command modules import only click at module level, the library when a command runs
(defaults shown in a command's help are imported for that help only), so ``hefed --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from hefed import __version__

from .aggregator import aggregate
from .analyst import solve
from .check import check
from .consortium import roster, round_group, study
from .factory import encrypt, enroll, evaluate, finetune
from .federate import federate
from .glm import glm
from .keyholder import decrypt, keygen
from .monitor import audit, consortium_audit, monitor, whatif
from .output import describe_error, exit_code, report_error
from .predict import predict
from .report import report
from .simulations import compare, demo, simulate

#: The protocol's commands, in the order they are used, then the simulations and trials on one machine.
PROTOCOL: Sequence[click.Command] = (keygen, enroll, roster, study, round_group, check, encrypt, aggregate, decrypt,
                                     solve, evaluate, finetune, predict, monitor, whatif, audit, consortium_audit,
                                     report, glm)
SIMULATIONS: Sequence[click.Command] = (demo, compare, simulate, federate)


class HefedGroup(click.Group):
    """Lists commands in the order given (protocol order), and turns library errors into one-line
    messages and exit codes."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        simulations = {command.name for command in SIMULATIONS}
        sections = [("Commands, in protocol order", [n for n in self.list_commands(ctx) if n not in simulations]),
                    ("Simulations and trials on one machine", [n for n in self.list_commands(ctx) if n in simulations])]
        limit = formatter.width - 6 - max((len(name) for name in self.commands), default=0)
        for title, names in sections:
            rows = [(name, self.commands[name].get_short_help_str(limit)) for name in names
                    if not self.commands[name].hidden]
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        from hefed.errors import HefedError

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


@click.group(cls=HefedGroup, commands=[*PROTOCOL, *SIMULATIONS],
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(__version__, prog_name="hefed")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Exact federated linear regression of emissions under Paillier encryption.

    Roles: the key holder runs keygen and decrypt; each factory runs enroll, encrypt, evaluate and
    finetune on its own data; the consortium keeps the roster and starts rounds; the aggregator runs
    aggregate; anyone given the decrypted aggregate runs solve. Run `hefed COMMAND --help` for details.
    """
    ctx.meta["hefed.debug"] = debug


if __name__ == "__main__":
    main()
