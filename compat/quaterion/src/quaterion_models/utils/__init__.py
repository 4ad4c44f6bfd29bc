from quaterion_models.utils.classes import restore_class, save_class_import
from quaterion_models.utils.meta import merge_meta
from quaterion_models.utils.tensors import move_to_device

__all__ = ["restore_class", "save_class_import", "move_to_device", "merge_meta"]
