"""The cached-feature proxy task: a frozen encoder run once, heads trained on its features.

DPC's proxy (Chen et al., 2018): the backbone's features are computed once per dataset split and
cached on disk (:class:`FeatureCache`), served as batches by :class:`CachedFeatureDataModule`,
and heads are trained on them by :class:`ProxySegmentationModule`. See ``docs/proxy.md``.
"""

from lightning_nas.proxy.cache import (
    CachedFeatureDataset,
    FeatureCache,
    SmpEncoderFeature,
    TornCacheWarning,
    check_cache,
    smp_encoder_feature,
    state_dict_digest,
)
from lightning_nas.proxy.datamodule import CachedFeatureDataModule, split_source
from lightning_nas.proxy.module import ProxySegmentationModule

__all__ = [
    "CachedFeatureDataModule",
    "CachedFeatureDataset",
    "FeatureCache",
    "ProxySegmentationModule",
    "SmpEncoderFeature",
    "TornCacheWarning",
    "check_cache",
    "smp_encoder_feature",
    "split_source",
    "state_dict_digest",
]
