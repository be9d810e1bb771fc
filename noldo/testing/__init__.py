"""Loopback servers speaking the real Earth Engine, Hugging Face hub and Overpass protocols, for tests.

One module per service, all on :mod:`noldo.testing.loopback`: ``noldo.testing.earthengine``
(``FakeEarthEngine``, ``Catalogue``, ``Faults``), ``noldo.testing.hub`` (``FakeHub``) and
``noldo.testing.overpass`` (``FakeOverpass``). Import the one you need; none imports torch.
"""
