from quaterion.train.xbm.xbm_config import XbmConfig, XbmDevice

__all__ = ["XbmConfig", "XbmDevice"]
