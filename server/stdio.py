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
import os
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import mcp_types as types
from mcp.server.stdio import stdio_server
from mcp.shared._context_streams import create_context_streams
from mcp.shared.message import SessionMessage

MAX_LINE_BYTES = 64 * 1024 * 1024

Streams = tuple[Any, Any]


def _is_stream(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


@asynccontextmanager
async def event_loop_stdio() -> AsyncIterator[Streams]:
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

    async def read_lines() -> None:
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
