"""Every import of simplug made by the compatibility distribution, in one place.

The rest of ``quaterion`` and ``quaterion_models`` imports simplug's names from here only, so a
move of simplug's modules is fixed in this file alone.
"""
from simplug import hookimpl  # noqa: F401  (light: no torch)


def __getattr__(name):  # lazy, so that ``import quaterion`` stays light
    value = _load(name)
    globals()[name] = value
    return value


def _load(name):
    import simplug

    if name in ("Encoder", "EncoderHead", "SimilarityLoss", "PairwiseLoss", "GroupLoss", "Distance", "Metric",
                "SimilarityPairSample", "SimilarityGroupSample"):
        return getattr(simplug, name)
    if name == "SimilarityModel":
        from simplug.serving import SimilarityModel

        return SimilarityModel
    if name in ("module_to_spec", "module_from_spec"):  # not public in simplug yet: see the report
        import simplug.model.torch_spec

        return getattr(simplug.model.torch_spec, name)
    if name == "NativeSequentialHead":
        from simplug.plugins.heads.sequential import SequentialHead

        return SequentialHead
    if name == "FastAPLoss":
        from simplug.plugins.losses.fast_ap import FastAPLoss

        return FastAPLoss
    raise AttributeError(f"quaterion._simplug has no {name!r}")
