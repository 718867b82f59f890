"""Meta's side of the WhatsApp Cloud API, as Meta documents it: what the sandbox and ``whatsapp.testing`` answer.

Both stand where Meta stands (the sandbox for a developer's browser, the fakes for the tests and the bench), so both
sign, number, refuse and describe exactly alike from here: :mod:`.shapes` (bytes, ids and records Meta hands out),
:mod:`.errors` (Meta's error envelope) and :mod:`.sends` (what ``POST /<phone_number_id>/messages`` accepts). The
service's own client and webhook never import it: they are tested against these shapes, so they must not be built
from them.
"""
