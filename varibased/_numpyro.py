"""numpyro, imported before any other module of the library (see :func:`load_numpyro`)."""

from __future__ import annotations

__all__ = ["load_numpyro"]


def load_numpyro() -> None:
    """Import numpyro for real, and repair it if a lazy proxy was imported first.

    ``import arviz`` puts a lazy proxy of ``numpyro`` into ``sys.modules`` (arviz_base's
    ``lazy_loader.load("numpyro")``). If the first real import is then of a subpackage
    (``import numpyro.distributions``), loading the proxy imports the subpackage a second
    time, and the module left in ``sys.modules`` lacks its submodules as attributes: numpyro
    then fails inside ``numpyro.factor`` with "module 'numpyro.distributions' has no attribute
    'distribution'". Importing the package itself first loads the proxy cleanly; a module
    already broken by a user's earlier import is repaired by binding its missing submodules.
    """
    import sys

    import numpyro  # noqa: F401 - loads a lazy proxy before any of our submodule imports
    import numpyro.distributions  # noqa: F401

    for name, module in list(sys.modules.items()):
        parent_name, _, child = name.rpartition(".")
        parent = sys.modules.get(parent_name)
        if module is not None and name.startswith("numpyro.") and parent is not None \
                and not hasattr(parent, child):
            setattr(parent, child, module)


load_numpyro()
