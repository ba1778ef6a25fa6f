"""Galaxy photometry for the mock survey: the real MGS tables, any pz-query-like table, or the
compact colour-magnitude-redshift model that ships with the package (fitted to the real MGS).

The model exists so `pz-mock` (and `make demo`) run with no ../shared data and no network: a
Gaussian mixture in (z, r, u-g, g-r, r-i, i-z) plus a per-band log-error-versus-magnitude law,
a few kB of JSON, sampled with numpy only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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

    def __len__(self) -> int:
        return len(self.z)

    def take(self, index: np.ndarray) -> Photometry:
        """A subset (or resampling with repeats) of the rows."""
        return Photometry(self.z[index], self.mag[index], self.err[index], self.source_row[index])


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
    ok = np.isfinite(z) & np.all(np.isfinite(mag), axis=1) & (z > 0) & (z <= Z_MAX)
    if not ok.any():
        raise PzError(f"{where}: no row with finite z in (0, {Z_MAX}] and ugriz magnitudes")
    rows = np.flatnonzero(ok)
    phot = Photometry(z[ok], mag[ok], err[ok], rows.astype(np.int64))
    missing = ~np.isfinite(phot.err)
    if missing.any():  # no errors listed: draw them like the real catalogue's
        model = load_model()
        drawn = model.draw_errors(phot.mag, np.random.default_rng(0))
        phot.err[missing] = drawn[missing]
    return phot


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
    """Gaussian mixture in x = (z, r, u-g, g-r, r-i, i-z) and log10(err_b) = a_b + b_b (m_b - 18)
    with Gaussian scatter s_b, fitted to the real MGS photometry by benchmarks/mock_fit_model.py."""

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
        z, r = x[:, 0], x[:, 1]
        ug, gr, ri, iz = x[:, 2], x[:, 3], x[:, 4], x[:, 5]
        g = r + gr
        mag = np.stack([g + ug, g, r, r - ri, r - ri - iz], axis=1)
        err = self.draw_errors(mag, rng)
        return Photometry(z, mag, err, np.arange(n, dtype=np.int64))

    def draw_errors(self, mag: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Magnitude errors like the real catalogue's, given magnitudes (n, 5)."""
        a, b, s = self.err_coef[:, 0], self.err_coef[:, 1], self.err_coef[:, 2]
        log_err = a + b * (mag - 18.0) + s * rng.standard_normal(mag.shape)
        return np.clip(10.0**log_err, 0.001, 1.0)

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": "gaussian mixture in (z, r, u-g, g-r, r-i, i-z)",
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


def fit_model(phot: Photometry, n_components: int = 16, seed: int = 0) -> PhotometryModel:
    """Fit the shipped model (needs scikit-learn; run offline by benchmarks/mock_fit_model.py)."""
    from sklearn.mixture import GaussianMixture

    x = model_features(phot)
    gmm = GaussianMixture(
        n_components, covariance_type="full", random_state=seed, reg_covar=1e-6, n_init=2
    ).fit(x)
    coef = np.zeros((5, 3))
    for k in range(5):
        ok = phot.err[:, k] > 0
        m, le = phot.mag[ok, k] - 18.0, np.log10(phot.err[ok, k])
        b, a = np.polyfit(m, le, 1)
        coef[k] = a, b, np.std(le - (a + b * m))
    return PhotometryModel(gmm.weights_, gmm.means_, gmm.covariances_, coef, R_LIMIT)
