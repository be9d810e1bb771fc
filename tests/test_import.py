"""`import noldo` stays light: no torch, ever."""

import subprocess
import sys


def test_import_noldo_does_not_import_torch():
    code = "import noldo, noldo.cli, noldo.verify, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_api():
    import noldo

    assert set(noldo.__all__) <= set(dir(noldo))
    assert noldo.__version__.count(".") == 2
