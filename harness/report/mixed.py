"""The linear mixed model of unbalanced studies: the fixed effect of a level with a random
intercept and a random slope by seed (statsmodels' ``MixedLM``, REML), fitted only when the fit
is usable.  Checked against statsmodels' formula interface.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SlopeFit:
    """The fixed effect of a 0/1 indicator in a linear mixed model with a random intercept and
    a random slope for the indicator by group (REML)."""

    estimate: float
    se: float
    converged: bool
    slope_sd: float  # the random slope's SD: how much the effect varies between groups
    message: str = ""


MIXED_OPTIMISERS = ("powell", "lbfgs", "bfgs", "nm")


# On standardised values (SD 1) no difference of two means has an SE near 10: a fit claiming
# one has failed, whatever the optimiser says.
_MAX_STANDARDISED_SE = 10.0


def unusable_fit(fitted) -> str:
    """Why a fitted ``MixedLM`` (on standardised values) cannot be used, or "" when it can:
    a non-finite log-likelihood or covariance, a random-effects covariance that is not
    positive semi-definite, or a slope SE no data of this spread can give."""
    llf = float(getattr(fitted, "llf", math.nan))
    if not math.isfinite(llf):
        return f"log-likelihood {llf}"
    cov_re = np.asarray(fitted.cov_re, dtype=float)
    if not np.all(np.isfinite(cov_re)):
        return "a non-finite random-effects covariance"
    if cov_re.size and float(np.linalg.eigvalsh((cov_re + cov_re.T) / 2).min()) < -1e-8:
        return "a random-effects covariance that is not positive semi-definite"
    se = np.asarray(fitted.bse_fe, dtype=float)
    if len(se) < 2 or not math.isfinite(float(se[1])) or not se[1] > 0:
        return "no finite standard error for the slope"
    if se[1] > _MAX_STANDARDISED_SE:
        return f"a slope SE of {se[1]:.3g} standard deviations of the data"
    return ""


def mixed_slope(y: np.ndarray, indicator: np.ndarray, groups: np.ndarray,
                covariates: np.ndarray | None = None) -> SlopeFit:
    """statsmodels' ``MixedLM``: y ~ 1 + indicator + covariates, (1 + indicator | group).

    A random intercept alone would let the groups' shared noise cancel but still count every
    row of a group as independent evidence about the effect; the random slope makes the
    variation of the effect between groups (seeds) its error term, as a paired test over
    groups does.  Fitted by REML from statsmodels' default start, trying its optimisers in
    turn; whether it converged is reported, never hidden.
    """
    from statsmodels.regression.mixed_linear_model import MixedLM
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    y = np.asarray(y, dtype=float)
    # Metrics such as accuracy vary by a few thousandths: the optimisers converge far more
    # reliably on standardised values, and REML is equivariant, so the slope scales back.
    centre, scale = float(np.mean(y)), float(np.std(y))
    if not scale > 0:
        return SlopeFit(math.nan, math.nan, False, math.nan, "the values do not vary")
    x = np.column_stack([np.ones(len(y)), indicator] +
                        ([] if covariates is None or covariates.size == 0 else [covariates]))
    exog_re = np.column_stack([np.ones(len(y)), indicator])
    model = MixedLM((y - centre) / scale, x, groups=groups, exog_re=exog_re)
    # Powell's derivative-free search first: with few seeds the variance of the intercept or
    # of the slope is often near zero, where the gradient methods stall; the others where it
    # fails.  A fit is only taken when it is usable: Powell can stop at a singular
    # random-effects covariance with a +inf log-likelihood and no warning, and its slope's SE
    # is then 1e5-1e8 times too large.
    result, failed, error = None, [], ""
    for method in MIXED_OPTIMISERS:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                fitted = model.fit(reml=True, method=[method])
            except (np.linalg.LinAlgError, ValueError) as exc:
                error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                continue
        unusable = unusable_fit(fitted)
        if unusable:
            error = f"{method}: {unusable}"
            continue
        problems = [w for w in caught if issubclass(w.category, ConvergenceWarning)
                    and "boundary" not in str(w.message) and "Hessian" not in str(w.message)]
        if result is None or (not problems and failed) or fitted.llf > result.llf:
            result, failed = fitted, problems
        if not problems:
            break
    if result is None:
        return SlopeFit(math.nan, math.nan, False, math.nan, f"no usable fit: {error}")
    estimate = float(result.fe_params[1]) * scale
    se = float(result.bse_fe[1]) * scale
    cov_re = np.asarray(result.cov_re)
    slope_sd = (math.sqrt(max(float(cov_re[1, 1]), 0.0)) * scale if cov_re.shape == (2, 2)
                else math.nan)
    converged = bool(getattr(result, "converged", True)) and not failed
    message = str(failed[0].message).splitlines()[0] if failed else ""
    return SlopeFit(estimate, se, converged, slope_sd, message)
