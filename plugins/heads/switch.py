from __future__ import annotations

from typing import Any, Mapping

import torch
from simplug.components.head import ROUTES_KEY, EncoderHead
from simplug.errors import DataError
from simplug.plugins.heads.layers import build_layer, describe_layer, output_width
from torch import nn


class SwitchHead(EncoderHead):
    """Sends each row through one of several options (heads or layers) chosen by a key.

    Typical use: one head for queries and another for documents (or one per modality), all
    ending at the same size so that their embeddings are compared in one space::

        {"name": "switch", "options": {"query": {"head": "skip_connection"}, "doc": "Identity"},
         "default": "doc"}

    A record names its option as ``{"obj": OBJECT, "route": "query"}`` (the key is
    ``route_key``); the encoders see ``OBJECT``. Records that are not such a table go to
    ``default`` (an error when there is none). When collating, the route of each row becomes
    the batch entry ``simplug.components.head.ROUTES_KEY`` (option indices in sorted name order), which
    ``forward(x, batch)`` reads. Options are described like the sequential head's layers.
    """

    reads_batch = True

    def __init__(
        self,
        input_embedding_size: int,
        options: Mapping[str, Any],
        route_key: str = "route",
        default: str | None = None,
        dropout: float = 0.0,
    ):
        super().__init__(input_embedding_size, dropout=dropout)
        if not isinstance(options, Mapping) or not options:
            raise ValueError(
                "options must be a non-empty table {name: head or layer}, e.g. {'query': {'head': "
                f"'skip_connection'}}, 'doc': 'Identity'}}, got {options!r}"
            )
        bad = [name for name in options if not isinstance(name, str) or not name]
        if bad:
            raise ValueError(f"option names must be non-empty strings, got {bad!r}")
        if not isinstance(route_key, str) or not route_key or route_key == "obj":
            raise ValueError(f"route_key must be a non-empty string other than 'obj', got {route_key!r}")
        self.names = sorted(options)
        if default is not None and default not in self.names:
            raise ValueError(f"default {default!r} is not one of the options {self.names}")
        modules, widths = {}, {}
        for name in self.names:
            where = f"switch head option {name!r}"
            modules[name] = build_layer(options[name], input_embedding_size, where)
            widths[name] = output_width(modules[name], input_embedding_size, where)
        if len(set(widths.values())) > 1:
            raise ValueError(
                f"every switch option must end at the same size so their embeddings can be compared, "
                f"got {widths}"
            )
        self.options = nn.ModuleDict(modules)
        self.route_key = route_key
        self.default = default
        self._output_size = next(iter(widths.values()))

    @property
    def output_size(self) -> int:
        return self._output_size

    def route_index(self, route: Any, where: str) -> int:
        try:
            return self.names.index(route)
        except ValueError:
            raise DataError(f"{where} has {self.route_key}={route!r}, which is not one of the options {self.names}") from None

    def prepare_records(self, records: list[Any]) -> tuple[list[Any], dict[str, Any]]:
        objects, routes = [], []
        for i, record in enumerate(records):
            if isinstance(record, Mapping) and self.route_key in record:
                if "obj" not in record:
                    raise DataError(f"record {i} names a {self.route_key} but has no 'obj': write {{'obj': ..., '{self.route_key}': ...}}")
                objects.append(record["obj"])
                routes.append(self.route_index(record[self.route_key], f"record {i}"))
            elif self.default is not None:
                objects.append(record)
                routes.append(self.names.index(self.default))
            else:
                raise DataError(
                    f"record {i} does not say which switch option to use: write it as {{'obj': ..., "
                    f"'{self.route_key}': one of {self.names}}}, or give the switch head a default"
                )
        return objects, {ROUTES_KEY: torch.tensor(routes, dtype=torch.long)}

    def routes_of(self, batch: Mapping[str, Any] | None, rows: int, device: torch.device) -> torch.Tensor:
        routes = batch.get(ROUTES_KEY) if isinstance(batch, Mapping) else None
        if routes is None:
            if self.default is None:
                raise DataError(
                    f"the switch head got no routes; encode records like {{'obj': ..., '{self.route_key}': "
                    f"one of {self.names}}} through the model, or give the switch head a default"
                )
            return torch.full((rows,), self.names.index(self.default), dtype=torch.long, device=device)
        if not isinstance(routes, torch.Tensor):
            routes = torch.tensor([self.route_index(r, f"row {i}") for i, r in enumerate(routes)], dtype=torch.long)
        routes = routes.to(device)
        if routes.shape != (rows,):
            raise DataError(f"the switch head got {tuple(routes.shape)} routes for {rows} rows")
        return routes

    def forward(self, input_vectors: torch.Tensor, batch: Mapping[str, Any] | None = None) -> torch.Tensor:
        self.check_input(input_vectors)
        routes = self.routes_of(batch, input_vectors.shape[0], input_vectors.device)
        return self.route(self.dropout(input_vectors), routes)

    def transform(self, input_vectors: torch.Tensor) -> torch.Tensor:
        return self.route(input_vectors, self.routes_of(None, input_vectors.shape[0], input_vectors.device))

    def route(self, input_vectors: torch.Tensor, routes: torch.Tensor) -> torch.Tensor:
        """Row i goes through option ``names[routes[i]]``; rows keep their order."""
        pieces, order = [], []
        for index, name in enumerate(self.names):
            rows = torch.nonzero(routes == index).flatten()
            if len(rows):
                pieces.append(self.options[name](input_vectors[rows]))
                order.append(rows)
        if not pieces:
            return input_vectors.new_zeros(0, self._output_size)
        out = torch.cat(pieces)
        inverse = torch.empty_like(routes)
        inverse[torch.cat(order)] = torch.arange(len(routes), device=routes.device)
        return out[inverse]

    def get_config_dict(self) -> dict[str, Any]:
        return {
            **super().get_config_dict(),
            "options": {name: describe_layer(self.options[name]) for name in self.names},
            "route_key": self.route_key,
            "default": self.default,
        }
