"""A streaming multipart/form-data reader with per-file size limits.

Starlette's ``request.form()`` spools a whole upload to a temporary file before the endpoint sees
it; a 2 GB upload would be read completely before being refused. This reader parses the body as it
arrives and stops at the first byte over a limit, so an oversize file costs at most the limit in
memory and is refused without reading the rest (a declared Content-Length over the total limit is
refused before reading anything).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from app.services.errors import Invalid, TooLarge, UnsupportedMedia

MAX_FIELD_BYTES = 64 * 1024


@dataclass
class UploadedFile:
    field: str
    filename: str | None
    content_type: str
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Form:
    files: list[UploadedFile]
    fields: dict[str, str]


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def read_multipart(request: Request, *, max_file_bytes: int, max_files: int) -> Form:
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise UnsupportedMedia("Send the file(s) as multipart/form-data.")
    limit_mb = max_file_bytes / (1024 * 1024)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_files * max_file_bytes + MAX_FIELD_BYTES * 4:
        raise TooLarge(
            f"The request is larger than the upload limit ({max_files} file(s) of {limit_mb:g} MB)."
        )

    files: list[UploadedFile] = []
    fields: dict[str, str] = {}
    state: dict = {"headers": {}, "name": b"", "value": b"", "part": None, "field": None}

    def on_part_begin() -> None:
        state["headers"] = {}
        state["part"] = None
        state["field"] = None

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["name"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["name"].lower()] = state["value"]
        state["name"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in disp:
            if len(files) >= max_files:
                raise Invalid(f"Too many files in one request (at most {max_files}).")
            raw = disp[b"filename"]
            part = UploadedFile(
                field=name,
                filename=raw.decode("utf-8", "replace"),
                content_type=state["headers"].get(b"content-type", b"").decode("latin-1"),
            )
            files.append(part)
            state["part"] = part
        else:
            state["field"] = [name, bytearray()]

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part = state["part"]
        if part is not None:
            if len(part.data) + (end - start) > max_file_bytes:
                raise TooLarge(
                    f"{part.filename or 'The file'} is larger than the upload limit of {limit_mb:g} MB; "
                    "it was refused while uploading."
                )
            part.data += data[start:end]
        elif state["field"] is not None:
            buf = state["field"][1]
            if len(buf) + (end - start) > MAX_FIELD_BYTES:
                raise TooLarge("A form field is too large.")
            buf += data[start:end]

    def on_part_end() -> None:
        if state["field"] is not None:
            name, buf = state["field"]
            fields[name] = buf.decode("utf-8", "replace")

    parser = MultipartParser(
        params[b"boundary"],
        {
            "on_part_begin": on_part_begin,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
        },
    )
    try:
        async for chunk in request.stream():
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except (TooLarge, Invalid):
        raise
    except Exception as exc:
        raise Invalid(f"The multipart body cannot be parsed ({exc}).") from None
    return Form(files=files, fields=fields)
