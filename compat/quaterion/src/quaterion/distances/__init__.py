"""The original's distances, with its numerics: the cosine *matrices* run 0..1
(``similarity_matrix = (cos + 1) / 2``, ``distance_matrix = 1 - that``) while the row-wise cosine
``distance`` is ``1 - cos`` (0..2)."""
from enum import Enum

from quaterion.distances.base_distance import BaseDistance
from quaterion.distances.cosine import Cosine
from quaterion.distances.dot_product import DotProduct
from quaterion.distances.euclidean import Euclidean
from quaterion.distances.manhattan import Manhattan


class Distance(str, Enum):
    EUCLIDEAN = "euclidean"
    COSINE = "cosine"
    DOT_PRODUCT = "dot_product"
    MANHATTAN = "manhattan"

    @staticmethod
    def get_by_name(name: str) -> BaseDistance:
        """The distance class (its methods are static) for a name or ``Distance`` member."""
        classes = {"cosine": Cosine, "euclidean": Euclidean, "manhattan": Manhattan, "dot_product": DotProduct}
        key = name.value if isinstance(name, Distance) else name
        try:
            return classes[key]
        except (KeyError, TypeError):
            raise ValueError(f"Unrecognized distance name: {name}. Must be one of {list(classes)}") from None


__all__ = ["Distance", "BaseDistance", "Cosine", "DotProduct", "Euclidean", "Manhattan"]
