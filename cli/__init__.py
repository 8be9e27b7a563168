"""Command-line interface of hefed (installed as ``hefed_cli``)."""
