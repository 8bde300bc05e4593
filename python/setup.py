"""inkflow's Python client: `pip install ./python` (or put python/ on PYTHONPATH).

No pyproject.toml on purpose: pip then builds with the setuptools already
installed (Debian's python3-setuptools) instead of fetching one from PyPI.
"""
from setuptools import setup

setup(
    name="inkflow",
    version="0.1.0",
    description="Client for inkflow services: ask/tell tuning studies (bkb), streams, Optuna sampler",
    packages=["inkflow"],
    python_requires=">=3.9",
    # Debian: python3-zmq, python3-msgpack (python3-optuna for inkflow.optuna)
    install_requires=["pyzmq", "msgpack"],
    extras_require={"optuna": ["optuna>=3.1"]},
)
