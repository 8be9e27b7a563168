"""Agreement of hefed's robust covariances with statsmodels on the gas-turbine years (one plant per year).

Prints the largest relative difference of the standard errors, z statistics, 95% intervals and robust F for
HC0–HC3, cluster by year and HAC (hac-panel, 4 lags): ``.venv/bin/python benchmarks/robust_agreement.py``.
The meats are the factories' exact ones, summed as the key holder decrypts them (tests/test_robust.py runs
the same through encryption); hefed's values are exact sandwiches rounded once.
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels.api as sm

import hefed
from hefed.errors import FewClustersWarning
from hefed.models import robust_inference
from hefed.stats import Encoding, meat_of, residual_moments

GAS_TURBINE = Path(__file__).resolve().parents[2] / "shared" / "data" / "gas-turbine"
if not GAS_TURBINE.is_dir():
    sys.exit(f"gas-turbine data not found at {GAS_TURBINE}")
frames = hefed.datasets.load_gas_turbine(GAS_TURBINE)
features = ["AT", "AP", "AH", "AFDP", "GTEP", "TIT", "TAT", "CDP"]
stats = None
for year, f in frames.items():
    part = hefed.compute_statistics(f, "NOX", features, factory_id=year)
    stats = part if stats is None else stats + part
model = hefed.solve(stats)
pooled = pd.concat(frames.values(), ignore_index=True)
groups = np.repeat(np.arange(len(frames)), [len(f) for f in frames.values()])
CASES = (("HC0", {"cov_type": "HC0"}), ("HC1", {"cov_type": "HC1"}), ("HC2", {"cov_type": "HC2"}),
         ("HC3", {"cov_type": "HC3"}), ("cluster", {"cov_type": "cluster", "cov_kwds": {"groups": groups}}),
         ("HAC", {"cov_type": "hac-panel", "cov_kwds": {"groups": groups, "maxlags": 4}}))
for cov_type, kwargs in CASES:
    parts = [residual_moments(list(model.coef_), model.intercept_, True, f[features].to_numpy(), f["NOX"].to_numpy(),
                              features, "NOX", Encoding(), meat=meat_of(cov_type), model_digest=model.digest(),
                              maxlags=4, xtx_inv=model.released_xtx_inv()) for f in frames.values()]
    total = sum(parts[1:], parts[0])
    total.contributors = list(frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewClustersWarning)
        res = robust_inference(model.inference(), total, cov_type, model_digest=None)
    ref = sm.OLS(pooled["NOX"], sm.add_constant(pooled[features])).fit(**kwargs)

    def rel(a, b) -> float:
        return float(np.max(np.abs(np.asarray(a) - np.asarray(b)) / np.abs(np.asarray(b))))

    print(f"{cov_type:8s} bse {rel(res.bse, ref.bse):.1e}  z {rel(res.tvalues, ref.tvalues):.1e}  "
          f"CI {rel(res.conf_int(), ref.conf_int()):.1e}  F {abs(res.fvalue/ref.fvalue-1):.1e}")
