"""PostgreSQL on host 1's address: forwards each TCP connection to the server's Unix socket.

Run inside host 1's namespace (`python pgproxy.py ADDRESS PORT SOCKET`). PostgreSQL itself keeps
listening on 127.0.0.1 in the root namespace, untouched; a Unix socket is a file, which every
namespace can open. Other hosts reach the database only through host 1's link, as they would
reach a database on host 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def serve(address: str, port: int, socket_path: str) -> None:
    async def forward(client_reader: asyncio.StreamReader,
                      client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_unix_connection(socket_path)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, server_writer),
                             pipe(server_reader, client_writer))

    server = await asyncio.start_server(forward, address, port, reuse_address=True)
    print(f"forwarding {address}:{port} to {socket_path}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
