"""The compat distribution's packages, module tree, guard against the original, and entry point."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from compat_site import compat_site, fresh_registry  # noqa: F401  (fixtures)

# every public name of quaterion 0.1.35 / quaterion-models 0.1.19 (../shared/QUATERION_COMPAT.md)
PUBLIC = {
    "quaterion": ["Quaterion", "TrainableModel"],
    "quaterion.dataset": ["GroupSimilarityDataLoader", "PairsSimilarityDataLoader", "SimilarityDataLoader",
                          "SimilarityGroupDataset", "SimilarityGroupSample", "SimilarityPairSample"],
    "quaterion.dataset.similarity_data_loader": ["PairsSimilarityDataLoader", "GroupSimilarityDataLoader"],
    "quaterion.dataset.similarity_dataset": ["SimilarityGroupDataset"],
    "quaterion.dataset.similarity_samples": ["SimilarityPairSample", "SimilarityGroupSample"],
    "quaterion.dataset.label_cache_dataset": ["LabelCacheMode"],
    "quaterion.dataset.train_collator": ["TrainCollator"],
    "quaterion.utils.enums": ["TrainStage"],
    "quaterion.utils.progress_bar": ["QuaterionProgressBar"],
    "quaterion.train.cache.cache_config": ["CacheConfig", "CacheType"],
    "quaterion.train.xbm.xbm_config": ["XbmConfig", "XbmDevice"],
    "quaterion_models.encoders.extras.fasttext_encoder": ["FasttextEncoder"],
    "quaterion_models.utils.classes": ["restore_class", "save_class_import"],
    "quaterion_models.modules.simple": ["ActivationFromFnName"],
    "quaterion.distances": ["BaseDistance", "Cosine", "Distance", "DotProduct", "Euclidean", "Manhattan"],
    "quaterion.eval.accumulators": ["Accumulator", "GroupAccumulator", "PairAccumulator"],
    "quaterion.eval.attached_metric": ["AttachedMetric"],
    "quaterion.eval.base_metric": ["BaseMetric"],
    "quaterion.eval.evaluator": ["Evaluator"],
    "quaterion.eval.group": ["GroupMetric", "RetrievalRPrecision"],
    "quaterion.eval.pair": ["PairMetric", "RetrievalPrecision", "RetrievalReciprocalRank", "retrieval_precision",
                            "retrieval_reciprocal_rank"],
    "quaterion.eval.samplers": ["BaseSampler"],
    "quaterion.eval.samplers.group_sampler": ["GroupSampler"],
    "quaterion.eval.samplers.pair_sampler": ["PairSampler"],
    "quaterion.loss": ["ArcFaceLoss", "CenterLoss", "CircleLoss", "ContrastiveLoss", "CosFaceLoss", "FastAPLoss",
                       "GroupLoss", "MultipleNegativesRankingLoss", "OnlineContrastiveLoss", "PairwiseLoss",
                       "SimilarityLoss", "SoftmaxLoss", "TripletLoss"],
    "quaterion.loss.extras": ["PytorchMetricLearningWrapper"],
    "quaterion.train.cache": ["CacheConfig", "CacheEncoder", "CacheType", "InMemoryCacheEncoder"],
    "quaterion.train.callbacks": ["CleanupCallback", "MetricsCallback"],
    "quaterion.train.trainable_model": ["TrainableModel"],
    "quaterion.train.xbm": ["XbmConfig", "XbmDevice"],
    "quaterion.utils": ["get_anchor_negative_mask", "get_anchor_positive_mask", "get_masked_maximum",
                        "get_masked_minimum", "get_triplet_mask", "info_value_of_dtype", "l2_norm",
                        "max_value_of_dtype", "min_value_of_dtype"],
    "quaterion.utils.utils": ["iter_by_batch"],
    "quaterion.main": ["Quaterion"],
    "quaterion_models": ["SimilarityModel"],
    "quaterion_models.encoders": ["Encoder", "SwitchEncoder"],
    "quaterion_models.encoders.switch_encoder": ["SwitchEncoder"],
    "quaterion_models.heads": ["EmptyHead", "EncoderHead", "GatedHead", "SequentialHead", "SkipConnectionHead",
                               "SoftmaxEmbeddingsHead", "StackedProjectionHead", "SwitchHead", "WideningHead"],
    "quaterion_models.heads.switch_head": ["SwitchHead"],
    "quaterion_models.heads.empty_head": ["EmptyHead"],
    "quaterion_models.model": ["DEFAULT_ENCODER_KEY", "SimilarityModel"],
    "quaterion_models.modules": ["ActivationFromFnName"],
    "quaterion_models.types": ["CollateFnType", "MetaExtractorFnType", "TensorInterchange"],
    "quaterion_models.utils": ["move_to_device", "restore_class", "save_class_import"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_exist(compat_site, module):
    imported = importlib.import_module(module)
    missing = [name for name in PUBLIC[module] if not hasattr(imported, name)]
    assert not missing, f"{module} lacks {missing}"


def test_packages_come_from_the_compat_tree(compat_site):
    import quaterion
    import quaterion_models

    assert "compat" in quaterion.__file__ and "compat" in quaterion_models.__file__


def test_compat_classes_are_simplug_components(compat_site):
    import simplug
    from quaterion.distances import Cosine
    from quaterion.eval.pair import RetrievalPrecision
    from quaterion.loss import ArcFaceLoss, GroupLoss, PairwiseLoss, TripletLoss, ContrastiveLoss
    from quaterion_models.encoders import Encoder
    from quaterion_models.heads import GatedHead

    assert issubclass(Encoder, simplug.Encoder) and issubclass(GatedHead, simplug.EncoderHead)
    assert issubclass(TripletLoss, simplug.GroupLoss) and issubclass(ContrastiveLoss, simplug.PairwiseLoss)
    assert isinstance(Cosine(), simplug.Distance) and isinstance(RetrievalPrecision(), simplug.Metric)
    # compat names that reuse simplug's losses still count as the original's GroupLoss, not PairwiseLoss
    arcface = ArcFaceLoss(4, 3)
    assert isinstance(arcface, GroupLoss) and not isinstance(arcface, PairwiseLoss)
    assert not isinstance(ContrastiveLoss(), GroupLoss)


def test_entry_point_registers_quaterion_components(fresh_registry):
    registry = fresh_registry
    from quaterion.distances import Cosine
    from quaterion.loss import TripletLoss
    from quaterion_models.heads import SkipConnectionHead

    assert registry.resolve("losses", "quaterion_triplet") is TripletLoss
    assert registry.resolve("distances", "quaterion_cosine") is Cosine
    assert registry.resolve("heads", "quaterion_skip_connection") is SkipConnectionHead
    record = registry.find_instance("heads", SkipConnectionHead(4))
    assert record.distribution == "simplug-quaterion-compat" and record.name == "quaterion_skip_connection"
    # simplug's own names keep simplug's semantics
    assert registry.resolve("losses", "triplet") is not TripletLoss


def _run(code: str, compat_site, extra_path: str = "") -> subprocess.CompletedProcess:
    prelude = f"import site, sys\nsite.addsitedir({str(compat_site)!r})\n"
    if extra_path:
        prelude += f"sys.path.insert(0, {extra_path!r})\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=120)


def test_import_is_light(compat_site):
    done = _run("import quaterion, quaterion.distances.base_distance\n"
                "print(json.dumps(['pytorch_lightning' in sys.modules]))".replace("print(", "import json; print("),
                compat_site)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [False]


@pytest.mark.parametrize("original", ["quaterion", "quaterion-models"])
def test_refuses_to_run_beside_the_original(compat_site, tmp_path, original):
    dist_info = tmp_path / f"{original.replace('-', '_')}-0.1.35.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {original}\nVersion: 0.1.35\n")
    done = _run("import quaterion_models", compat_site, extra_path=str(tmp_path))
    assert done.returncode != 0
    assert "ImportError" in done.stderr
    assert f"{original} 0.1.35" in done.stderr and "simplug-quaterion-compat" in done.stderr
    assert "pip uninstall" in done.stderr


def test_the_site_is_active_only_for_compat_modules(compat_site):
    from compat_site import deactivate_compat, install_compat
    from simplug.registry import get_registry

    assert "quaterion_triplet" in get_registry().names("losses")
    deactivate_compat()
    try:
        assert not any(str(compat_site) in p or "compat/quaterion/src" in p for p in sys.path)
        assert "quaterion_triplet" not in get_registry().names("losses")
    finally:
        install_compat()
    assert "quaterion_triplet" in get_registry().names("losses")
