"""mediasvc: DICOM media and film service for the burner host of a radiology department."""

import sys

__version__ = "0.1.0"
APPLICATION_NAME = "mediasvc"

# pydicom imports requests when it is installed, only to download its own test files
# (pydicom.data.download; it falls back to urllib without it), which mediasvc never does:
# requests and what it pulls in (urllib3, charset_normalizer, idna, 90 text codecs) are 219
# modules, 0.09 s of every command's start with a warm cache and more from a cold disk, and
# again in every worker a forkserver starts. So requests is hidden while pydicom loads, and
# importable again afterwards.
if "pydicom" not in sys.modules and "requests" not in sys.modules:
    sys.modules["requests"] = None  # type: ignore[assignment]  # makes `import requests` fail
    try:
        import pydicom.data  # noqa: F401
    finally:
        if sys.modules.get("requests", 0) is None:
            del sys.modules["requests"]
