"""asyncio: a TCP server and several clients in one process, with random
delays, so the order of the output lines differs from run to run; then an
HTTP and an HTTPS request to the test peer through asyncio streams (TLS goes
through ssl.MemoryBIO and SSLObject).

    net_asyncio.py HOST HTTP_PORT HTTPS_PORT CAFILE
"""
import asyncio
import random
import ssl
import sys

host, http_port, https_port, cafile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]


async def handle(reader, writer):
    peer = writer.get_extra_info("peername")
    while line := await reader.readline():
        await asyncio.sleep(random.random() * 0.02)
        writer.write(line.upper())
        await writer.drain()
    print(f"server: client from port {peer[1] % 1} done")
    writer.close()
    await writer.wait_closed()


async def client(n, port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for i in range(3):
        await asyncio.sleep(random.random() * 0.03)
        writer.write(f"client {n} message {i} {random.randrange(1000)}\n".encode())
        await writer.drain()
        print(f"client {n} got: {(await reader.readline()).decode().strip()}")
    writer.close()
    await writer.wait_closed()


async def fetch(port, context):
    reader, writer = await asyncio.open_connection(
        host, port, ssl=context, server_hostname=host if context else None)
    writer.write(f"GET /json HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body.decode()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print("server listening:", port > 0)
    await asyncio.gather(*(client(n, port) for n in range(4)))
    server.close()
    await server.wait_closed()
    print("http:", *await fetch(http_port, None))
    context = ssl.create_default_context(cafile=cafile)
    print("https:", *await fetch(https_port, context))
    print("loop time advanced:", asyncio.get_running_loop().time() > 0)


asyncio.run(main())
