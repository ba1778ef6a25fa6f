"""Galaxy photometry for the mock survey: the real MGS tables, any pz-query-like table, or the
compact colour-magnitude-redshift model that ships with the package (fitted to the real MGS).

The model is a Gaussian mixture in (z, r, u-g, g-r, r-i, i-z) fitted by extreme deconvolution
(Bovy, Hogg & Roweis 2011; astroML's XDGMM) of the real MGS photometry with its listed
petroMagErr, so its samples carry the galaxies' intrinsic scatter only: the mock adds its own
measurement noise by measuring its own frames. With it ships a per-band log-error-versus-
magnitude law (for tables without errors and catalogue-only surveys). A few kB of JSON, sampled
with numpy only, so `pz-mock` and `make demo` run with no ../shared data and no network.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from photoz_tools.errors import PzError

BANDS = "ugriz"
# the MGS selection the sample obeys (dereddened Petrosian r; the real files stop at 17.85)
R_LIMIT = 17.8
Z_MAX = 0.4
MODEL_RESOURCE = "mock_model.json"
# the MLZ SDSS_MGS header lists 18 names for 19 columns: 'eu' is missing before 'eg'
_MGS_COLUMNS = [
    "zs",
    "u",
    "g",
    "r",
    "i",
    "z",
    "u-g",
    "g-r",
    "r-i",
    "i-z",
    "eu",
    "eg",
    "er",
    "ei",
    "ez",
    "eu-g",
    "eg-r",
    "er-i",
    "ei-z",
]


@dataclass
class Photometry:
    """Intrinsic (dereddened) galaxy photometry: redshift, ugriz magnitudes, 1-sigma errors.

    `source_row` keeps the row of the input table each galaxy came from, so a train/test split
    made on the photometry survives rendering (a test row never leaks into training).
    """

    z: np.ndarray  # (n,)
    mag: np.ndarray  # (n, 5) ugriz
    err: np.ndarray  # (n, 5)
    source_row: np.ndarray  # (n,) int64
    # rows of the input left out, by reason (z not finite, z outside the range, no magnitudes)
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.z)

    def take(self, index: np.ndarray) -> Photometry:
        """A subset (or resampling with repeats) of the rows."""
        return Photometry(
            self.z[index], self.mag[index], self.err[index], self.source_row[index], self.skipped
        )


# --------------------------------------------------------------------------- reading tables


def read_mgs(path: str | Path) -> Photometry:
    """The MLZ SDSS_MGS whitespace table (header line starting with '#')."""
    path = Path(path)
    try:
        with open(path) as fh:
            header = fh.readline()
        data = np.loadtxt(path, comments="#", ndmin=2)
    except (OSError, ValueError) as exc:
        raise PzError(f"{path}: cannot read the photometry table ({exc})") from None
    names = header.lstrip("#").split()
    if data.shape[1] == len(_MGS_COLUMNS) and len(names) == len(_MGS_COLUMNS) - 1:
        names = _MGS_COLUMNS  # the known off-by-one header
    if len(names) != data.shape[1]:
        raise PzError(f"{path}: header names {len(names)} columns but rows have {data.shape[1]}")
    cols = {n.lower(): data[:, i] for i, n in enumerate(names)}
    return _from_columns(cols, str(path))


def _pick(cols: dict[str, np.ndarray], candidates: list[str]) -> np.ndarray | None:
    for c in candidates:
        if c.lower() in cols:
            return np.asarray(cols[c.lower()], dtype=np.float64)
    return None


def _from_columns(cols: dict[str, np.ndarray], where: str) -> Photometry:
    """Find z, ugriz and errors under the names the MGS file, pz-query or SkyServer use."""
    z = _pick(cols, ["zs", "zspec", "z_spec", "specz", "redshift", "z"])
    if z is None:
        raise PzError(
            f"{where}: no redshift column (looked for z, zs, zspec, redshift); "
            f"columns: {', '.join(sorted(cols))}"
        )
    mags, errs = [], []
    for b in BANDS:
        m = _pick(cols, [f"dered_petro_{b}", f"dered_{b}", f"petroMag_{b}", f"modelMag_{b}", b])
        if m is None:
            raise PzError(f"{where}: no {b} magnitude column (looked for dered_petro_{b}, {b})")
        e = _pick(
            cols,
            [f"petroMagErr_{b}", f"dered_petro_{b}_err", f"err_{b}", f"e{b}", f"modelMagErr_{b}"],
        )
        mags.append(m)
        errs.append(e if e is not None else np.full_like(m, np.nan))
    mag = np.stack(mags, axis=1)
    err = np.stack(errs, axis=1)
    ok, skipped = _usable(z, mag)
    if not ok.any():
        raise PzError(f"{where}: no row with finite z in (0, {Z_MAX}] and ugriz magnitudes")
    rows = np.flatnonzero(ok)
    phot = Photometry(z[ok], mag[ok], err[ok], rows.astype(np.int64), skipped)
    missing = ~np.isfinite(phot.err)
    if missing.any():  # no errors listed: draw them like the real catalogue's
        model = load_model()
        drawn = model.draw_errors(phot.mag, np.random.default_rng(0))
        phot.err[missing] = drawn[missing]
    return phot


def _usable(z: np.ndarray, mag: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Rows a mock can render, and how many of the others fail each test (never silently)."""
    finite_z = np.isfinite(z)
    in_range = finite_z & (np.where(finite_z, z, 0) > 0) & (np.where(finite_z, z, 0) <= Z_MAX)
    mags_ok = np.all(np.isfinite(mag), axis=1)
    skipped = {
        "z not finite": int((~finite_z).sum()),
        f"z outside (0, {Z_MAX}]": int((finite_z & ~in_range).sum()),
        "a magnitude not finite": int((in_range & ~mags_ok).sum()),
    }
    return in_range & mags_ok, {k: v for k, v in skipped.items() if v}


def skipped_line(where: str, phot: Photometry) -> str | None:
    """One line naming the input and how many of its rows were left out, and why."""
    if not phot.skipped:
        return None
    what = ", ".join(f"{v} with {k}" for k, v in phot.skipped.items())
    n = sum(phot.skipped.values())
    return f"{where}: {n} row{'s' if n > 1 else ''} left out ({what})"


def read_photometry(path: str | Path) -> Photometry:
    """The MGS whitespace files, or any FITS/Parquet/CSV table through photoz_tools.tables."""
    path = Path(path)
    if not path.exists():
        raise PzError(f"{path}: no such photometry table (--photometry)")
    suffixes = "".join(path.suffixes).lower()
    table_ext = (
        ".fits",
        ".fit",
        ".fits.gz",
        ".fits.bz2",
        ".parquet",
        ".pq",
        ".csv",
        ".ecsv",
        ".vot",
        ".xml",
    )
    if not any(suffixes.endswith(e) for e in table_ext):
        return read_mgs(path)
    from photoz_tools.tables import read_table

    table = read_table(str(path))
    cols = {}
    for name in table.column_names:
        try:
            cols[name.lower()] = table.column(name).to_numpy(zero_copy_only=False)
        except Exception:  # image or list columns: not photometry
            continue
    return _from_columns(cols, str(path))


# --------------------------------------------------------------------------- the shipped model


@dataclass
class PhotometryModel:
    """Gaussian mixture in x = (z, r, u-g, g-r, r-i, i-z) of intrinsic (error-deconvolved)
    photometry, and log10(err_b) = a_b + b_b (m_b - 18) with Gaussian scatter s_b, fitted to the
    real MGS photometry by benchmarks/mock_fit_model.py."""

    weights: np.ndarray  # (k,)
    means: np.ndarray  # (k, 6)
    covariances: np.ndarray  # (k, 6, 6)
    err_coef: np.ndarray  # (5, 3): a, b, scatter
    r_limit: float = R_LIMIT
    fitted_on: str = ""

    def sample(self, n: int, rng: np.random.Generator) -> Photometry:
        """n galaxies inside the MGS cuts (rejection on z in (0, 0.4] and r <= r_limit)."""
        out: list[np.ndarray] = [np.empty((0, 6))]
        have = 0
        chol = np.linalg.cholesky(self.covariances)
        while have < n:
            m = max(2 * (n - have), 64)
            comp = rng.choice(len(self.weights), size=m, p=self.weights)
            x = self.means[comp] + np.einsum("nij,nj->ni", chol[comp], rng.standard_normal((m, 6)))
            ok = (x[:, 0] > 0.002) & (x[:, 0] <= Z_MAX) & (x[:, 1] <= self.r_limit) & (x[:, 1] > 12)
            out.append(x[ok])
            have += int(ok.sum())
        x = np.concatenate(out)[:n]
        mag = magnitudes(x[:, 1], x[:, 2:])
        err = self.draw_errors(mag, rng)
        return Photometry(x[:, 0], mag, err, np.arange(n, dtype=np.int64))

    def sample_given(
        self, z: np.ndarray, r_obs: np.ndarray, r_err: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Intrinsic ugriz (n, 5) for galaxies of known z and measured r +- r_err.

        Per galaxy: the mixture conditioned on z; an intrinsic r drawn from its posterior given
        r_obs (the mixture's r marginal times the Gaussian likelihood, conjugate per component);
        then the four colours from the mixture conditioned on (z, r). The row's own measured
        colours are not used: their noise is not frozen into the truth.
        """
        z, r_obs = np.asarray(z, float), np.asarray(r_obs, float)
        s2 = np.maximum(np.nan_to_num(np.asarray(r_err, float), nan=0.05), 1e-4) ** 2
        mu, cov = self.means, self.covariances  # (k, 6), (k, 6, 6)
        # 1. condition on z: weights and the (r, colours) Gaussian of each component
        vz = cov[:, 0, 0]
        dz = z[:, None] - mu[None, :, 0]  # (n, k)
        logw = np.log(self.weights) - 0.5 * (dz**2 / vz + np.log(2 * np.pi * vz))
        gain = cov[:, 1:, 0] / vz[:, None]  # (k, 5)
        m = mu[None, :, 1:] + dz[:, :, None] * gain[None]  # (n, k, 5)
        c = cov[:, 1:, 1:] - np.einsum("ki,kj->kij", gain, cov[:, 0, 1:])  # (k, 5, 5)
        # 2. the r likelihood: component weights, then r's conjugate posterior
        vr = c[None, :, 0, 0] + s2[:, None]
        logw = logw - 0.5 * ((r_obs[:, None] - m[:, :, 0]) ** 2 / vr + np.log(2 * np.pi * vr))
        w = np.exp(logw - logw.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        k = (w.cumsum(axis=1) < rng.random(len(z))[:, None]).sum(axis=1)
        k = np.minimum(k, len(self.weights) - 1)
        rows = np.arange(len(z))
        mk, ck = m[rows, k], c[k]  # (n, 5), (n, 5, 5)
        prec = 1 / ck[:, 0, 0] + 1 / s2
        r_mean = (mk[:, 0] / ck[:, 0, 0] + r_obs / s2) / prec
        r = r_mean + rng.standard_normal(len(z)) / np.sqrt(prec)
        # 3. colours given z and the intrinsic r
        g = ck[:, 1:, 0] / ck[:, :1, 0]  # (n, 4)
        cm = mk[:, 1:] + g * (r - mk[:, 0])[:, None]
        cc = ck[:, 1:, 1:] - np.einsum("ni,nj->nij", g, ck[:, 0, 1:])
        chol = np.linalg.cholesky(cc + 1e-10 * np.eye(4))
        col = cm + np.einsum("nij,nj->ni", chol, rng.standard_normal((len(z), 4)))
        return magnitudes(r, col)

    def draw_errors(self, mag: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Magnitude errors like the real catalogue's, given magnitudes (n, 5)."""
        a, b, s = self.err_coef[:, 0], self.err_coef[:, 1], self.err_coef[:, 2]
        log_err = a + b * (mag - 18.0) + s * rng.standard_normal(mag.shape)
        return np.clip(10.0**log_err, 0.001, 1.0)

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": "gaussian mixture in (z, r, u-g, g-r, r-i, i-z), error-deconvolved",
                "fitted_on": self.fitted_on,
                "r_limit": self.r_limit,
                "weights": self.weights.round(8).tolist(),
                "means": self.means.round(6).tolist(),
                "covariances": self.covariances.round(9).tolist(),
                "err_coef": self.err_coef.round(5).tolist(),
            },
            indent=0,
        )

    @classmethod
    def from_json(cls, text: str) -> PhotometryModel:
        d = json.loads(text)
        w = np.asarray(d["weights"], dtype=np.float64)
        return cls(
            w / w.sum(),
            np.asarray(d["means"]),
            np.asarray(d["covariances"]),
            np.asarray(d["err_coef"]),
            float(d.get("r_limit", R_LIMIT)),
            d.get("fitted_on", ""),
        )


def load_model() -> PhotometryModel:
    """The compact model shipped in photoz_tools/data/mock_model.json."""
    text = resources.files("photoz_tools").joinpath("data", MODEL_RESOURCE).read_text()
    return PhotometryModel.from_json(text)


def model_features(phot: Photometry) -> np.ndarray:
    """The model's coordinates (z, r, u-g, g-r, r-i, i-z) of a photometry sample."""
    m = phot.mag
    return np.column_stack(
        [
            phot.z,
            m[:, 2],
            m[:, 0] - m[:, 1],
            m[:, 1] - m[:, 2],
            m[:, 2] - m[:, 3],
            m[:, 3] - m[:, 4],
        ]
    )


def magnitudes(r: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """ugriz (n, 5) from r and the colours (u-g, g-r, r-i, i-z)."""
    g = r + colours[:, 1]
    i = r - colours[:, 2]
    return np.stack([g + colours[:, 0], g, r, i, i - colours[:, 3]], axis=1)


def feature_covariances(err: np.ndarray) -> np.ndarray:
    """(n, 6, 6) measurement covariances of (z, r, colours) from independent ugriz errors:
    adjacent colours share a band, so their errors are anti-correlated. The spectroscopic z
    error (~1e-4) is negligible beside the intrinsic spread and is left at zero."""
    a = np.zeros((6, 5))
    a[1, 2] = 1.0
    for j in range(4):
        a[2 + j, j], a[2 + j, j + 1] = 1.0, -1.0
    return np.einsum("ib,nb,jb->nij", a, err**2, a)


def extreme_deconvolution(
    x: np.ndarray,
    s: np.ndarray,
    n_components: int,
    seed: int = 0,
    max_iter: int = 200,
    tol: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Gaussian mixture whose convolution with each point's error covariance s[i] best
    fits the points x (Bovy, Hogg & Roweis 2011, the EM of astroML's XDGMM): weights, means,
    covariances. Vectorised over points and components (astroML's loop took 12 s per EM step
    on 5,000 points here; this takes a fraction of a second). Started, as astroML does, from
    scikit-learn's GaussianMixture on the noisy points."""
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(n_components, covariance_type="full", random_state=seed, max_iter=20)
    with warnings.catch_warnings():  # 20 steps are a start, not a fit: no convergence warning
        warnings.simplefilter("ignore")
        gmm.fit(x)
    w, mu, v = gmm.weights_, gmm.means_, gmm.covariances_
    n, d = x.shape
    last = -np.inf
    for _ in range(max_iter):
        t = v[None] + s[:, None]  # (n, k, d, d)
        tinv = np.linalg.inv(t)
        diff = x[:, None, :] - mu[None]  # (n, k, d)
        maha = np.einsum("nki,nkij,nkj->nk", diff, tinv, diff)
        logdet = np.linalg.slogdet(t)[1]
        logp = np.log(w)[None] - 0.5 * (maha + logdet + d * np.log(2 * np.pi))
        top = logp.max(axis=1, keepdims=True)
        logl = top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))
        q = np.exp(logp - logl[:, None])  # responsibilities (n, k)
        vt = np.einsum("kij,nkjl->nkil", v, tinv)  # V T^-1
        b = mu[None] + np.einsum("nkij,nkj->nki", vt, diff)
        bcov = v[None] - np.einsum("nkij,kjl->nkil", vt, v)
        qk = q.sum(axis=0)
        w = qk / n
        mu = np.einsum("nk,nki->ki", q, b) / qk[:, None]
        db = b - mu[None]
        v = np.einsum("nk,nki,nkj->kij", q, db, db) + np.einsum("nk,nkij->kij", q, bcov)
        v = v / qk[:, None, None] + 1e-9 * np.eye(d)
        mean = float(logl.mean())
        if mean - last < tol:
            break
        last = mean
    return w, mu, v


def fit_model(phot: Photometry, n_components: int = 16, seed: int = 0) -> PhotometryModel:
    """Fit the shipped model by extreme deconvolution of the listed errors (run offline by
    benchmarks/mock_fit_model.py).

    The sample's truncation at observed r <= 17.8 is not modelled (pygmmis could): the listed
    r errors (median 0.0055 mag) are far narrower than any structure of the r distribution,
    so the cut moves well under 1 % of the galaxies across it and the deconvolved r marginal
    equals the truncated one to that precision.
    """
    x = model_features(phot)
    w, mu, v = extreme_deconvolution(x, feature_covariances(phot.err), n_components, seed)
    coef = np.zeros((5, 3))
    for k in range(5):
        ok = phot.err[:, k] > 0
        m, le = phot.mag[ok, k] - 18.0, np.log10(phot.err[ok, k])
        b, a = np.polyfit(m, le, 1)
        coef[k] = a, b, np.std(le - (a + b * m))
    cov = 0.5 * (v + np.transpose(v, (0, 2, 1)))  # symmetric for numpy's Cholesky
    return PhotometryModel(w, mu, cov, coef, R_LIMIT)
