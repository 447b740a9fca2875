"""On-premises gateways: Windows authentication for APIs inside a private network.

Cloud side (imported by the gateway app): `registry` (gateways and heartbeats),
`envelope.encrypt_for_gateway` (credentials sealed for one gateway's key), `relay`
(requests out through Storage queues, responses back). Agent side (runs on the
private network; imports pyspnego): `agent`, `windows_auth`, `keys`. See README.md.
"""

# Import the submodules directly: this package's __init__ stays empty so that importing
# one part (e.g. the envelope at connection creation) does not load the Storage SDKs,
# which matter for the Functions cold start (bench/RESULTS.md, import time).
