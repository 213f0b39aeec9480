"""A JSON column that holds a pydantic model: validated when read, serialised when written."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import JSON
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

M = TypeVar("M", bound=BaseModel)


class ModelJSON(TypeDecorator[M], Generic[M]):
    """Stores ``model`` instances as JSON objects (unset fields left out); reads them back as
    ``model``. A plain dict written to the column is validated first, so a wrong key or value
    fails the write, not a later read. Reading skips keys the model does not know, so rows an
    older version wrote with a key since retired still load."""

    impl = JSON
    cache_ok = True

    def __init__(self, model: type[M]) -> None:
        super().__init__()
        self.model = model

    def process_bind_param(self, value: M | dict[str, Any] | None, dialect: Dialect) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, self.model):
            value = self.model.model_validate(value)
        return value.model_dump(mode="json", exclude_none=True)

    def process_result_value(self, value: Any, dialect: Dialect) -> M | None:
        if value is None:
            return None
        known = self.model.model_fields
        return self.model.model_validate({k: v for k, v in dict(value).items() if k in known})

    def coerce_compared_value(self, op: Any, value: Any) -> Any:
        return self.impl_instance.coerce_compared_value(op, value)
