"""Meta's and OpenAI's side of the wire, for tests and the bench, as Flask ships ``flask.testing``.

A fake Graph API (:mod:`.graph`) and a fake OpenAI server (:mod:`.openai_server`) over real loopback HTTP, webhook
payloads built and signed as Meta sends them (:mod:`.webhooks`), and the real service run under gunicorn
(:mod:`.service`). The service never imports this package at runtime; ``tests/`` and ``bench/`` do, and so may a
project's own tests.
"""
