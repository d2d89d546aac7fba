"""A reference from the node's history: the last accepted nights of one metric. Pure, no I/O.

Which nights (select): those since the last reset (a saved baseline or an accept line) with this
fingerprint, passed and not regressed, the newest N. A regressed night is left out so that a
regression does not become the new normal by itself: a real slowdown fails every night until
someone saves or accepts it (an explicit decision); the price, a false alarm's night (under 1%)
missing from the reference, is a negligible bias. Improved nights stay: an improvement becomes
the new normal, and losing it again fails.

The model. Night i's log-median is y_i = mu + b_i + e_i: b_i ~ N(0, tau^2) is what changes from
one session to the next (clock and thermal state, background load, memory layout; what the fixed
noise floor only guessed at), e_i ~ N(0, s_i^2) the within-session error that
stats.run_log_median_se measured (floored at SE_FLOOR, so that a night of identical rounds does
not take all the weight). It assumes the nights since the reset are exchangeable and independent:
the same code up to changes inside the tolerance, the same fingerprint, one spread. tau comes from
the nights: the restricted likelihood of tau (mu integrated out) times a half-Cauchy prior of
scale the noise floor (Gelman 2006's choice for a group-level spread from few groups: the floor
is the typical spread, the heavy tail lets the nights take tau far above it), on a grid; the
center is the posterior mean of mu, ``se_log`` its posterior sd. With fewer than 3 nights nothing
is estimated and tau is the floor.

Tonight (compare_history) is one more night: y_0 = mu + b_0 + e_0 (+ a change), so unchanged,
y_0 - center varies by s_0^2 + tau^2 + var(center). Leaving tau^2 out is what a single saved
baseline with too small a floor does, and cries wolf on any machine whose nights vary more than
its rounds (the saved mode below: 9% false regressions at tau 2%). The interval is that of the
posterior predictive (a mixture over tau, heavier-tailed than a normal): a few nights that agreed
by luck cannot make the gate overconfident. compare.decide makes the verdict, with the se that
gives the normal interval the predictive's width.

Robustness. A wild night (an idle machine, 10% faster, verdict improved) would make tau large
for N nights (every verdict noisy) and move the center: a night more than OUTLIER_Z = 5 sd from
all the others' center (with their tau) is left out (Reference.left_out), one at a time, at most
a quarter of them, with 4 nights or more. In simulated series (below) it left out 0-15 of 5000
normal nights; with the oldest of 5 nights 10% faster it left one out in 97% of the series at
tau 0.5% (82% at 1%, 36% at 2%, where a 10% night is 5 sd), and 5%-slower nights were still
caught in 74% at tolerance 3% (0% without the screen: every verdict noisy).

A slow drift (-1% a night) moves the reference with it: each night is within the tolerance of
the last N, so this gate passes it. The change-point and drift check on the history
(changepoint.find_drift) is what catches it.

The choice, by simulation (bench/reference_figures.py, 1000 trials a case: 5 reference nights,
30 log-normal rounds a night, within-session se 0.3-1%, floor 1%; regressed in % at tolerance
3% / 5%; "saved" is the saved-baseline mode, the newest night as baseline with the fixed floor):

    tau   method                   unchanged    3% slower     5% slower
    0.5%  history (this)           0.1 / 0.0    34.5 / 8.9    84.7 / 74.9
          shrink, normal           0.1 / 0.0    52.0 / 9.2    94.7 / 76.8
          shrink + t(k+1)          0.0 / 0.0    17.8 / 7.6    71.3 / 68.1
          saved                    0.1 / 0.0    27.0 / 15.8   79.9 / 72.1
    1%    history (this)           0.3 / 0.0    20.1 / 12.0   55.3 / 50.6
          shrink, normal           0.8 / 0.2    37.8 / 17.1   82.2 / 67.8
          shrink + t(k+1)          0.0 / 0.0    14.0 / 10.5   49.3 / 46.8
          saved                    1.6 / 0.6    30.5 / 22.4   72.5 / 64.6
    2%    history (this)           1.3 / 1.0     9.2 / 7.7    21.6 / 21.2
          shrink, normal           2.6 / 1.5    23.2 / 18.8   45.5 / 42.0
          shrink + t(k+1)          0.9 / 0.8     8.1 / 7.6    22.8 / 22.6
          saved                    9.3 / 7.6    36.1 / 31.2   64.3 / 58.6

("shrink": the Paule-Mandel tau^2 shrunk towards the floor as a prior worth 2 nights, a normal
interval: the most catches, but 2.6% false at tau 2%; "+ t(k+1)": its interval scaled by the
conjugate t quantile: safe, but it gives away half the catches at small tau. A plain t(k-1) was
safer still and weaker.) With 10 nights the history gives 0.3/0.0, 56.2/8.2, 95.5/77.5 (tau
0.5%), 0.6/0.1, 30.3/15.7, 77.1/68.0 (1%), 0.9/0.8, 10.1/9.4, 29.2/28.5 (2%). A second seed,
2000 trials, gave 0.9% false at tau 2% with 5 nights; a prior of scale 1.5x the floor gave 0.4%
but 81.5% instead of 87.3% of 5%-slower nights at tau 0.5%. A change of exactly the tolerance is
caught at most 75% of the time by the rule's 0.674-se margin, and only when the whole se is
under about 0.4%: nights with se 0.3-1% cannot get there, whatever the reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist

from . import compare, stats
from .compare import Metric, Verdict
from .history import Accept, Entry, Point, Run

HISTORY = "history:"  # Verdict.reference of a history comparison: "history:" + the number of nights
MIN_SPREAD_NIGHTS = 3  # fewer nights: no spread is estimated, the fixed noise floor stands for it
SE_FLOOR = 0.001  # a night's within-session se is taken as at least 0.1%
OUTLIER_Z = 5.0  # a night this many standard deviations from all the others' center is left out
_Z = NormalDist().inv_cdf
_SQRT2 = math.sqrt(2.0)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def select(entries: Sequence[Entry], fingerprint: str, metric: str, limit: int) -> list[tuple[Run, Point]]:
    """The accepted nights of ``metric`` in one test's ``entries`` (history.HistoryStore order: time
    order), oldest first, the newest ``limit`` of them.

    The reference starts again at the last reset in file order: a run that saved the baseline
    (``reset``) counts itself; an accept line restarts at the run it names, wherever that run is,
    or after itself when it names none (or a run no longer there). The run that starts the
    reference counts whatever its verdict and outcome (saving or accepting it says it is the new
    normal). Every other run counts when it has this ``fingerprint``, recorded ``metric``, passed,
    and the metric was not ``regressed`` (a change point that failed the test says regressed too):
    a regression does not become the new normal by itself; nor ``oversubscribed`` (a run that did
    not get its CPUs measured the neighbours, not the code)."""
    if limit < 1:
        raise ValueError(f"a history reference needs at least 1 night, got {limit}")
    start, forced = reset_start(entries)
    chosen: list[tuple[Run, Point]] = []
    for entry in entries[start:]:
        if not isinstance(entry, Run) or entry.fingerprint != fingerprint or metric not in entry.metrics:
            continue
        point = entry.metrics[metric]
        if entry.run_id == forced or (entry.outcome == "passed"
                                      and point.status not in (compare.REGRESSED, compare.OVERSUBSCRIBED)):
            chosen.append((entry, point))
    return chosen[-limit:]


def _index_of_run(entries: Sequence[Entry], run_id: str | None) -> int | None:
    if run_id is None:
        return None
    for i, entry in enumerate(entries):
        if isinstance(entry, Run) and entry.run_id == run_id:
            return i
    return None


@dataclass(frozen=True)
class Reference:
    """What the accepted nights of one metric say tonight's median should be.

    ``center``: the reference median (of the speed-adjusted values when ``adjusted``), the posterior
    mean of the nights' log-medians; ``se_log``: its standard error; ``between_sd``: the spread
    between nights (root mean square of its posterior, a log-scale standard deviation), None with
    fewer than MIN_SPREAD_NIGHTS nights (the noise floor stands for it). ``measured_sd``: the
    Paule-Mandel estimate of the spread from the nights alone, for reading. ``raw_center``: the
    center of the plain medians, what a verdict shows as its baseline. ``logs``/``ses``: the nights'
    log-medians and within-session standard errors (floored) that the verdict's model uses.
    ``left_out``: runs whose night was too far from all the others to share their spread."""

    label: str
    nights: int
    center: float
    se_log: float
    between_sd: float | None
    adjusted: bool
    probe_kind: str | None
    runs: tuple[str, ...]
    first_time: str
    last_time: str
    raw_center: float = 0.0
    measured_sd: float | None = None
    exact: bool = False
    logs: tuple[float, ...] = ()
    ses: tuple[float, ...] = ()
    left_out: tuple[str, ...] = ()


def between_variance(y: Sequence[float], s: Sequence[float]) -> float:
    """The Paule-Mandel estimate of the between-night variance tau^2 of log-medians ``y`` with
    within-session standard errors ``s``: the tau^2 at which the generalised Q statistic
    sum w_i (y_i - mean_w)^2, w_i = 1/(s_i^2 + tau^2), equals its expectation k - 1 (0 when the
    nights already agree within their errors). Q falls as tau^2 grows, and Q <= SS/tau^2 (SS the
    plain sum of squares), so the root lies in [0, SS/(k-1)]: found by bisection."""
    k = len(y)
    if k < 2:
        return 0.0
    s2 = [max(v, SE_FLOOR) ** 2 for v in s]

    def q(t2: float) -> float:
        w = [1.0 / (v + t2) for v in s2]
        m = math.fsum(wi * yi for wi, yi in zip(w, y)) / math.fsum(w)
        return math.fsum(wi * (yi - m) ** 2 for wi, yi in zip(w, y))

    if q(0.0) <= k - 1:
        return 0.0
    mean = math.fsum(y) / k
    lo, hi = 0.0, math.fsum((v - mean) ** 2 for v in y) / (k - 1)
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if q(mid) > k - 1:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return (lo + hi) / 2.0


# One point of the posterior of the spread: (probability, tau, mu_hat(tau), var of mu_hat(tau))
Component = tuple[float, float, float, float]
GRID = 64  # points of the grid over tau


def _given_tau(y: Sequence[float], s2: Sequence[float], tau: float) -> tuple[float, float, float]:
    """mu_hat, its variance 1/W and the restricted log-likelihood of the nights for one tau
    (``s2``: the squared within-session errors)."""
    t2 = tau * tau
    w = [1.0 / (v + t2) for v in s2]
    total = sum(w)
    mu = sum(wi * yi for wi, yi in zip(w, y)) / total
    q = sum(wi * (yi - mu) ** 2 for wi, yi in zip(w, y))
    return mu, 1.0 / total, 0.5 * (sum(math.log(wi) for wi in w) - math.log(total) - q)


def posterior(y: Sequence[float], s: Sequence[float], floor: float) -> tuple[Component, ...]:
    """The spread of the nights' log-medians ``y`` (within-session errors ``s``, floored at
    SE_FLOOR) under the random-effects model, as a grid over tau. With fewer than
    MIN_SPREAD_NIGHTS nights: tau is the ``floor`` (one point). With more: the restricted
    likelihood of tau (mu integrated out) times a half-Cauchy prior of scale ``floor`` (uniform
    when the floor is 0), on GRID midpoints of [0, T], T = max(6 floor, 4 sd(y), SE_FLOOR): far
    beyond where the posterior lives."""
    k = len(y)
    if k == 0:
        raise ValueError("a reference needs at least one night")
    s2 = [max(v, SE_FLOOR) ** 2 for v in s]
    if k < MIN_SPREAD_NIGHTS:
        mu, var, _ = _given_tau(y, s2, floor)
        return ((1.0, floor, mu, var),)
    mean = math.fsum(y) / k
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in y) / (k - 1))
    top = max(6.0 * floor, 4.0 * sd, SE_FLOOR)
    points = []
    for j in range(GRID):
        tau = top * (j + 0.5) / GRID
        mu, var, loglik = _given_tau(y, s2, tau)
        prior = -math.log1p((tau / floor) ** 2) if floor > 0 else 0.0
        points.append((loglik + prior, tau, mu, var))
    best = max(p[0] for p in points)
    weights = [math.exp(p[0] - best) for p in points]
    total = math.fsum(weights)
    return tuple((w / total, tau, mu, var) for w, (_, tau, mu, var) in zip(weights, points) if w / total > 1e-9)


def _summary(components: Sequence[Component]) -> tuple[float, float, float]:
    """The posterior mean of mu, its standard deviation and the root mean square of tau."""
    center = math.fsum(p * mu for p, _, mu, _ in components)
    var = math.fsum(p * (v + (mu - center) ** 2) for p, _, mu, v in components)
    return center, math.sqrt(var), math.sqrt(math.fsum(p * tau * tau for p, tau, _, _ in components))


def _predictive(components: Sequence[Component], s0: float) -> list[tuple[float, float, float]]:
    """Tonight's log-median minus the center, as a mixture: (probability, mean, sd) per tau."""
    center = _summary(components)[0]
    return [(p, mu - center, math.sqrt(s0 * s0 + tau * tau + var)) for p, tau, mu, var in components]


def _cdf(mixture: Sequence[tuple[float, float, float]], x: float) -> float:
    return math.fsum(p * 0.5 * math.erfc((m - x) / (sd * _SQRT2)) for p, m, sd in mixture)


def predictive_se(components: Sequence[Component], s0: float, confidence: float) -> float:
    """The standard error that makes the decision rule's normal interval as wide as the
    ``confidence`` interval of tonight's log-median minus the reference center, when tonight is
    one more night of the same spread with its own within-session error ``s0``: the posterior
    predictive, a mixture over tau of normals N(mu_hat(tau) - center, s0^2 + tau^2 + var(tau)).
    Its tails are heavier than a normal's of the same variance (the spread is uncertain), which
    is what keeps a few nights that agreed by luck from making the gate overconfident. The two
    quantiles by Newton's method inside a shrinking bracket."""
    if not math.isfinite(s0):
        return math.inf
    mixture = _predictive(components, s0)
    q = (1.0 + confidence) / 2.0
    z = _Z(q)
    reach = z * max(sd for _, _, sd in mixture) + max(abs(m) for _, m, _ in mixture)
    quantiles = []
    for target, lo, hi in ((q, 0.0, reach), (1.0 - q, -reach, 0.0)):
        x = (lo + hi) / 2.0
        for _ in range(100):
            f = _cdf(mixture, x) - target
            if abs(f) < 1e-12 or hi - lo < 1e-12:
                break
            if f < 0:
                lo = x
            else:
                hi = x
            density = math.fsum(p * math.exp(-0.5 * ((x - m) / sd) ** 2) / (sd * _SQRT_2PI) for p, m, sd in mixture)
            step = x - f / density if density > 0 else (lo + hi) / 2.0
            x = step if lo < step < hi else (lo + hi) / 2.0
        quantiles.append(x)
    return (quantiles[0] - quantiles[1]) / (2.0 * z)


def _outliers(y: list[float], s: list[float], floor: float) -> list[int]:
    """Indices of the nights (in the order found) further than OUTLIER_Z standard deviations from
    the center of all the other nights, the standard deviation being sqrt(s_i^2 + tau^2 + se^2)
    with the others' tau (root mean square of its posterior) and the se of their center. One at
    a time: the night furthest from the median (in units of sqrt(s_i^2 + floor^2)) is the
    candidate; at most a quarter of the nights, and only while at least MIN_SPREAD_NIGHTS + 1
    nights are there to judge by. (Not the others' predictive interval: from three or four
    nights its tails are so heavy that a night 20 standard deviations out passed half the time.)"""
    left: list[int] = []
    keep = list(range(len(y)))
    while len(keep) > MIN_SPREAD_NIGHTS and len(left) < len(y) // 4:
        mid = stats.median([y[j] for j in keep])
        i = max(keep, key=lambda j: abs(y[j] - mid) / math.sqrt(s[j] ** 2 + floor * floor))
        others = [j for j in keep if j != i]
        center, se, tau = _summary(posterior([y[j] for j in others], [s[j] for j in others], floor))
        if abs(y[i] - center) <= OUTLIER_Z * math.sqrt(s[i] ** 2 + tau * tau + se * se):
            break
        left.append(i)
        keep.remove(i)
    return left


def reference_for(points: Sequence[tuple[Run, Point]], cur: Metric, noise_floor: float) -> Reference | None:
    """The reference of metric ``cur`` from its accepted nights (select), or None when no night
    can serve: a night counts when its unit and direction are the current metric's, its median is
    positive and its within-session se is known (a run of fewer than 3 samples has none).

    Speed-adjusted medians (Point.adjusted) are used when every night and the current metric have
    probes of the same kind and the rule of compare.adjusts holds for each night; else the raw
    medians. A deterministic metric (``exact`` tonight and every night) takes the median of the
    nights' counts, without statistics. Otherwise the nights' log-medians go into the random-
    effects model (module docstring), after leaving out the nights too far from all others."""
    usable = [(r, p) for r, p in points
              if p.unit == cur.unit and p.higher_is_better == cur.higher_is_better and p.median > 0]
    if cur.exact and usable and all(p.exact for _, p in usable):
        center = stats.median([p.median for _, p in usable])
        return _reference(usable, center=center, se_log=0.0, between_sd=None, adjusted=False,
                          raw_center=center, exact=True)
    usable = [(r, p) for r, p in usable if p.se is not None and math.isfinite(p.se)]
    if not usable:
        return None
    adjusted = all(p.adjusted is not None and p.adjusted > 0
                   and compare.adjusts(cur, p.probe_kind if p.adjusted is not None else None, p.cpu_share)
                   for _, p in usable)
    y = [math.log(p.adjusted if adjusted and p.adjusted else p.median) for _, p in usable]
    s = [max(p.se or 0.0, SE_FLOOR) for _, p in usable]
    floor = math.log1p(noise_floor)
    left = set(_outliers(y, s, floor))
    left_out = tuple(usable[i][0].run_id for i in sorted(left))
    usable = [u for i, u in enumerate(usable) if i not in left]
    y = [v for i, v in enumerate(y) if i not in left]
    s = [v for i, v in enumerate(s) if i not in left]
    center, se_log, tau = _summary(posterior(y, s, floor))
    k = len(y)
    between = tau if k >= MIN_SPREAD_NIGHTS else None
    # the plain medians' center, weighted as the nights are at the spread found
    w = [1.0 / (v * v + tau * tau) for v in s]
    raw = math.fsum(wi * math.log(p.median) for wi, (_, p) in zip(w, usable)) / math.fsum(w)
    return _reference(usable, center=math.exp(center), se_log=se_log, between_sd=between, adjusted=adjusted,
                      raw_center=math.exp(raw), measured_sd=math.sqrt(between_variance(y, s)) if between else None,
                      logs=tuple(y), ses=tuple(s), left_out=left_out)


def _reference(used: Sequence[tuple[Run, Point]], center: float, se_log: float, between_sd: float | None,
               adjusted: bool, raw_center: float, measured_sd: float | None = None, exact: bool = False,
               logs: tuple[float, ...] = (), ses: tuple[float, ...] = (), left_out: tuple[str, ...] = ()) -> Reference:
    runs = [r for r, _ in used]
    return Reference(label=f"{HISTORY}{len(runs)}", nights=len(runs), center=center, se_log=se_log,
                     between_sd=between_sd, adjusted=adjusted, probe_kind=used[0][1].probe_kind if adjusted else None,
                     runs=tuple(r.run_id for r in runs), first_time=runs[0].time, last_time=runs[-1].time,
                     raw_center=raw_center, measured_sd=measured_sd, exact=exact, logs=logs, ses=ses,
                     left_out=left_out)


def compare_history(test: str, ref: Reference, cur: Metric, tolerance: float, confidence: float = 0.99,
                    noise_floor: float = 0.0) -> Verdict:
    """Tonight's median (speed-adjusted when the reference is) against ``ref.center``, by the
    decision rule of compare.decide. Tonight is one more night drawn from the nights' spread: the
    interval is that of the posterior predictive (predictive_se: tonight's within-session se^2 +
    tau^2 + the center's own variance, over the posterior of tau; with fewer than
    MIN_SPREAD_NIGHTS nights tau is ``noise_floor``). The verdict: reference ``ref.label``,
    baseline = the center of the nights' plain medians (the unit of the metric, as a saved
    baseline shows its median, also when the change is speed-adjusted), raw_change = tonight's
    plain median over it - 1, n_baseline = the number of nights, details["between_sd"] when the
    spread was estimated. A gate=False metric gets ``info``, as in compare_metric."""
    details: dict[str, str] = {}
    if ref.between_sd is not None:
        details["between_sd"] = f"{ref.between_sd * 100:.1f}%"
    if ref.left_out:
        details["left_out"] = ", ".join(ref.left_out)
    current = stats.median(cur.samples) if cur.samples else None
    known = Verdict(
        test=test, metric=cur.name, status=compare.NOISY, unit=cur.unit, higher_is_better=cur.higher_is_better,
        tolerance=tolerance, current=current, baseline=ref.raw_center, n_current=len(cur.samples),
        n_baseline=ref.nights, confidence=confidence, adjusted=ref.adjusted and not ref.exact, reference=ref.label,
        details=details,
    )
    if known.adjusted and (not cur.probes or len(cur.probes) != len(cur.samples)):
        return compare.finish(replace(known, reason="the reference is speed-adjusted and this run has no probes "
                                                    "paired with its samples"), cur)
    values = compare.adjusted_samples(cur) if known.adjusted else cur.samples
    if current is None or current <= 0 or ref.center <= 0 or stats.median(values) <= 0:
        return compare.finish(replace(known, reason="medians must be positive to form a ratio"), cur)
    raw_change = current / ref.raw_center - 1.0
    tonight = stats.median(values)
    if ref.exact and cur.exact:
        return compare.finish(compare.decide_exact(tonight / ref.center - 1.0, known), cur)
    short = None
    if len(values) < stats.MIN_SAMPLES:
        short = f"too few samples to decide ({len(values)} current; need {stats.MIN_SAMPLES})"
    comps = posterior(ref.logs, ref.ses, math.log1p(noise_floor)) if ref.logs else ()
    se = predictive_se(comps, stats.run_log_median_se(values), confidence) if comps else math.inf
    est = stats.ratio_estimate(tonight / ref.center, se, confidence)
    return compare.finish(compare.decide(replace(known, raw_change=raw_change), est, short), cur)


def reset_start(entries: Sequence[Entry]) -> tuple[int, str | None]:
    """Where the reference starts again in ``entries``: (index, the run id that starts it or None).
    The one place of select()'s rule: the last reset in file order, a run that saved the baseline
    (itself), or an accept line (the run it names, wherever it is; else the entry after it)."""
    start, forced = 0, None
    for i, entry in enumerate(entries):
        if isinstance(entry, Run) and entry.reset:
            start, forced = i, entry.run_id
        elif isinstance(entry, Accept):
            at = _index_of_run(entries, entry.run_id)
            start, forced = (at, entry.run_id) if at is not None else (i + 1, None)
    return start, forced


def since_reset(entries: Sequence[Entry], fingerprint: str, metric: str) -> list[Run]:
    """Every run of ``metric`` with this ``fingerprint`` since the last reset, oldest first, whatever
    its verdict and outcome: the series the change-point check reads (a regressed night is data
    there, though never a reference)."""
    start, _forced = reset_start(entries)
    return [e for e in entries[start:] if isinstance(e, Run) and e.fingerprint == fingerprint and metric in e.metrics]


def comparable_nights(points: Sequence[Point], paired_ref: str | None = None,
                      probe_kind: str | None = None) -> tuple[str, list[int], list[float]]:
    """The nights of one metric that can be set side by side with tonight's, and their values:
    (what the values are, the indices of the points used, the values). The one place of that rule,
    for the change-point check and the ``history`` listing alike.

    - ``paired_ref`` (tonight was paired with that reference build, a Verdict.reference
      ``paired:...``): the nights paired with the same reference, their paired ratio (1 + change):
      "paired". Each ratio is of one session, both builds side by side, so a faster or slower
      machine that night is not in it; raw medians of paired nights would carry the load of each
      night.
    - else, when tonight has probes of ``probe_kind`` and every night not paired has a speed-adjusted
      median of that kind: those nights, "adjusted".
    - else every night's plain median, "median".

    A night whose metric was ``oversubscribed`` (it did not get its CPUs) is never used: its value
    is the neighbours' doing."""
    usable = [i for i, p in enumerate(points) if p.status != compare.OVERSUBSCRIBED]
    if paired_ref:
        chosen = [i for i in usable if points[i].reference == paired_ref and points[i].change is not None]
        return "paired", chosen, [1.0 + float(points[i].change or 0.0) for i in chosen]
    unpaired = [i for i in usable if not (points[i].reference or "").startswith(compare.PAIRED)]
    if probe_kind is not None and unpaired and all(
            points[i].adjusted is not None and points[i].probe_kind == probe_kind for i in unpaired):
        return "adjusted", unpaired, [float(points[i].adjusted or 0.0) for i in unpaired]
    return "median", usable, [points[i].median for i in usable]
