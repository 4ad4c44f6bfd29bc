"""Type aliases of the original's interface."""
from typing import Any, Callable, Dict, List, Tuple, Union

from torch import Tensor

#: what a collate function returns and an encoder's forward takes
TensorInterchange = Union[Tensor, Tuple[Tensor], List[Tensor], Dict[str, Tensor], Dict[str, dict], Any]
#: turns a list of raw records into the encoder's input
CollateFnType = Callable[[List[Any]], TensorInterchange]
#: turns a list of raw records into one meta dict per record
MetaExtractorFnType = Callable[[List[Any]], List[dict]]

__all__ = ["TensorInterchange", "CollateFnType", "MetaExtractorFnType"]
