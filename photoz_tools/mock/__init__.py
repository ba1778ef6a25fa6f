"""pz-mock: a simulated SDSS survey (GalSim galaxies in SDSS corrected frames) for tests, demo.

``photoz_tools.mock(...)`` is the plain function :func:`photoz_tools.mock.survey.mock`. Because
this subpackage has the same name, importing it replaces the lazy attribute of ``photoz_tools``
with the package; the package is therefore callable too, so ``photoz_tools.mock(...)`` works
whichever was imported first. GalSim is imported only when frames are drawn.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from photoz_tools.mock.survey import mock

        return mock(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
