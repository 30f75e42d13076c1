"""What both adapters share: the translation result and readable messages
from pydantic validation errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from pydantic import ValidationError

from ...errors import RequestError
from ...request import GenerationRequest


@dataclass
class Translated:
    """A GenerationRequest plus the image bytes it references (see input_ref)."""

    request: GenerationRequest
    inputs: dict[str, bytes] = field(default_factory=dict)


class FieldError(RequestError):
    """A RequestError that knows which request field was wrong (OpenAI's `param`)."""

    def __init__(self, message: str, param: Optional[str] = None):
        super().__init__(message)
        self.param = param


def validation_message(err: ValidationError, rename: dict[str, str] | None = None) -> tuple[str, Optional[str]]:
    """('width: Input should be a multiple of 8', 'width') from pydantic's error,
    with our field names mapped back to the client's (`rename`)."""
    rename = rename or {}
    parts, first_param = [], None
    for item in err.errors():
        loc = [str(p) for p in item.get("loc", ()) if p != "__root__"]
        msg = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
        name = rename.get(loc[0], loc[0]) if loc else None
        if first_param is None and name:
            first_param = name
        if first_param is None and not loc:
            # whole-request checks start with the field they are about ("prompt is empty: ...")
            word = msg.split(" ", 1)[0]
            if word in GenerationRequest.model_fields:
                first_param = rename.get(word, word)
        parts.append(f"{name}: {msg}" if name else msg)
    return "; ".join(parts) or "invalid request", first_param


def build_request(fields: dict[str, Any], rename: dict[str, str] | None = None) -> GenerationRequest:
    """GenerationRequest(**fields), its validation errors as FieldError."""
    try:
        return GenerationRequest(**fields)
    except ValidationError as err:
        message, param = validation_message(err, rename)
        raise FieldError(message, param) from None
