"""A CoAP endpoint built on aiocoap for the rd mesh test: it serves
/.well-known/core and /sensors/simple (rt="simple-temp") and, from the same
socket, asks the RD given as argv[1] for a simple registration
(POST /.well-known/rd?ep=...), then prints the answer's code and payload."""
import asyncio
import sys

import aiocoap
import aiocoap.resource as resource


class Temp(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(payload=b"21")


async def main():
    site = resource.Site()
    site.add_resource([".well-known", "core"], resource.WKCResource(site.get_resources_as_linkheader))
    t = Temp()
    t.rt = "simple-temp"
    site.add_resource(["sensors", "simple"], t)
    ctx = await aiocoap.Context.create_server_context(site, bind=("::1", 0))
    r = await ctx.request(aiocoap.Message(code=aiocoap.POST, uri=sys.argv[1])).response
    print(r.code, r.payload.decode())
    await ctx.shutdown()


asyncio.run(main())
