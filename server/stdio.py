"""MCP's stdio wire read and written on the event loop.

The SDK's `stdio_server` hands every line read and written to a worker thread; on a
point lookup those thread hops cost more than the database call. Here stdin and stdout
are asyncio pipes on the loop itself. As in the SDK, fd 0 and fd 1 are diverted while
serving (to /dev/null and stderr), so nothing else in the process can write onto the
protocol stream. Where the standard streams are not pipes (a regular file, say) the
SDK's own transport is used.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import mcp_types as types
from mcp.server.stdio import stdio_server
from mcp.shared._context_streams import create_context_streams
from mcp.shared.message import SessionMessage

from server.protocol import DIRECT_METHODS, InvalidParams

MAX_LINE_BYTES = 64 * 1024 * 1024

Streams = tuple[Any, Any]


def _direct_request(line: bytes, handshake: bool) -> dict[str, Any] | None:
    """The request, if it is one to answer directly: a handshake-era client's tools/call,
    tools/list or ping (the 2026-07-28 era never sends `initialize`)."""
    if not handshake or b'"method"' not in line:
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return None
    if (
        isinstance(message, dict)
        and message.get("jsonrpc") == "2.0"
        and message.get("method") in DIRECT_METHODS
        and isinstance(message.get("id"), str | int)
        and not isinstance(message.get("id"), bool)
    ):
        return message
    return None


def _is_initialize(line: bytes) -> bool:
    if b'"initialize"' not in line:
        return False
    try:
        message = json.loads(line)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("method") == "initialize"


def _is_stream(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


Answer = Callable[[str, Any], Awaitable[dict[str, Any]]]


@asynccontextmanager
async def event_loop_stdio(answer: Answer | None = None) -> AsyncIterator[Streams]:
    """The SDK server's read and write streams over stdin/stdout. With `answer`, requests
    of DIRECT_METHODS from a client that began with `initialize` (the handshake era) are
    answered by it directly, the rest go to the SDK server."""
    if not (_is_stream(0) and _is_stream(1)):
        async with stdio_server() as streams:
            yield streams
        return
    sys.stdout.flush()
    wire_in, wire_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
    read_transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(wire_in, "rb", buffering=0)
    )
    write_transport, write_protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(wire_out, "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(write_transport, write_protocol, None, loop)

    read_stream_writer, read_stream = create_context_streams[SessionMessage | Exception](0)
    write_stream, write_stream_reader = create_context_streams[SessionMessage](0)

    handshake = False

    async def answer_directly(request: dict[str, Any]) -> None:
        assert answer is not None
        try:
            result = await answer(request["method"], request.get("params"))
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"], "result": result}
        except InvalidParams as exc:
            error = {"code": -32602, "message": str(exc)}
            reply = {"jsonrpc": "2.0", "id": request["id"], "error": error}
        writer.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
        await writer.drain()

    async def read_lines() -> None:
        nonlocal handshake
        async with read_stream_writer:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError) as exc:
                    await read_stream_writer.send(exc)
                    continue
                if not line:
                    return
                if not line.strip():
                    continue
                if answer is not None:
                    request = _direct_request(line, handshake)
                    if request is not None:
                        tasks.start_soon(answer_directly, request)
                        continue
                    handshake = handshake or _is_initialize(line)
                try:
                    message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except Exception as exc:  # the session answers a malformed line with an error
                    await read_stream_writer.send(exc)
                    continue
                await read_stream_writer.send(SessionMessage(message))

    async def write_lines() -> None:
        async with write_stream_reader:
            async for session_message in write_stream_reader:
                data = session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
                writer.write(data.encode() + b"\n")
                await writer.drain()

    tasks: anyio.abc.TaskGroup
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read_lines)
            tasks.start_soon(write_lines)
            yield read_stream, write_stream
            tasks.cancel_scope.cancel()
    finally:
        read_transport.close()
        # Answers already written must reach the client before the process may exit.
        for _ in range(1000):
            if write_transport.is_closing() or not write_transport.get_write_buffer_size():
                break
            await asyncio.sleep(0.001)
        with suppress(OSError, RuntimeError):
            writer.close()
